"""Request parsing and validation: examples, and a property over arbitrary bodies (parse never
raises; every error is a typed one that fits in a result)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.contract.error_types import ERROR_TYPES
from worker.contract.reply_to import ReplyToPolicy
from worker.contract.request import BadRequest, Request, RequestV1, parse_request
from worker.contract.result import build_result, result_message

US = "https://sqs.us-east-1.amazonaws.com/123456789012/"
EU = "https://sqs.eu-west-1.amazonaws.com/123456789012/"
RESULT_QUEUE = US + "results"
INPUT_QUEUE = US + "requests"


def policy(patterns: tuple[str, ...] = (), **kwargs: Any) -> ReplyToPolicy:
    options: dict[str, Any] = {
        "region": "us-east-1",
        "input_queue_url": INPUT_QUEUE,
        "result_queue_url": RESULT_QUEUE,
    }
    options.update(kwargs)
    return ReplyToPolicy.build(patterns, **options)


def parse(body: Any, patterns: tuple[str, ...] = (), **kwargs: Any) -> Request | BadRequest:
    text = body if isinstance(body, str) else json.dumps(body)
    options: dict[str, Any] = {"worker_task": "embed", "max_body_bytes": 262_144}
    options.update(kwargs)
    return parse_request(text, reply_to=policy(patterns), **options)


def test_valid_request_single_string_becomes_one_input() -> None:
    parsed = parse({"id": "a1", "task": "embed", "inputs": "hello world"})
    assert parsed == Request("a1", "embed", ["hello world"], {}, None)


def test_valid_request_list_inputs_parameters_and_task_defaulting() -> None:
    parsed = parse({"inputs": ["a", "b"], "parameters": {"normalize": False}})
    assert isinstance(parsed, Request)
    assert parsed.inputs == ["a", "b"]
    assert parsed.task == "embed"  # a queue is served by one task: the field is optional
    assert parsed.parameters == {"normalize": False}
    assert parsed.id is None


@pytest.mark.parametrize(
    ("body", "error_type", "fragment"),
    [
        ("not json", "InvalidJSON", "not JSON"),
        ("", "InvalidJSON", "not JSON"),
        ("[1, 2]", "InvalidRequest", "JSON object"),
        ('"just a string"', "InvalidRequest", "JSON object"),
        ({"id": "x"}, "InvalidRequest", "inputs"),
        ({"inputs": 5}, "InvalidRequest", "inputs"),
        ({"inputs": ["ok", 3]}, "InvalidRequest", "inputs"),
        ({"inputs": "a", "input": "typo"}, "InvalidRequest", "input"),
        ({"inputs": "a", "parameters": []}, "InvalidRequest", "parameters"),
        ({"inputs": "a", "version": 2}, "InvalidRequest", "version 2"),
        ({"inputs": []}, "EmptyInputs", "empty"),
        ({"inputs": ["fine", "   "]}, "EmptyInputs", "input 1"),
        ({"inputs": "a", "task": "translate"}, "UnknownTask", "translate"),
        ({"inputs": "a", "task": "generate"}, "UnsupportedTask", "serves task 'embed'"),
        ({"inputs": ["x"] * 1025}, "TooManyInputs", "1025"),
    ],
)
def test_bad_requests_get_a_typed_error(body: Any, error_type: str, fragment: str) -> None:
    parsed = parse(body)
    assert isinstance(parsed, BadRequest), parsed
    assert parsed.type == error_type
    assert fragment in parsed.message


def test_body_too_big_is_rejected_before_parsing() -> None:
    body = json.dumps({"inputs": "x" * 2000})
    parsed = parse(body, max_body_bytes=1000)
    assert isinstance(parsed, BadRequest)
    assert parsed.type == "BodyTooLarge"
    assert str(len(body)) in parsed.message


def test_bad_request_keeps_caller_id_and_allowed_reply_to() -> None:
    parsed = parse({"id": "req-7", "inputs": [], "reply_to": RESULT_QUEUE})
    assert isinstance(parsed, BadRequest)
    assert (parsed.request_id, parsed.reply_to) == ("req-7", RESULT_QUEUE)


# ---------------------------------------------------------------- property: parse never raises

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=300), st.integers(), st.none()),
        "task": st.one_of(st.sampled_from(["embed", "classify", "generate", "x"]), json_values),
        "inputs": st.one_of(
            st.text(max_size=30), st.lists(st.text(max_size=30), max_size=5), json_values
        ),
        "parameters": st.one_of(
            st.dictionaries(st.text(max_size=8), json_values, max_size=3), json_values
        ),
        "reply_to": st.one_of(st.just(RESULT_QUEUE), st.text(max_size=40), json_values),
        "version": st.one_of(st.just(1), json_values),
        "extra": json_values,
    },
)
surrogate_escapes = st.lists(
    st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\ud83d\\ude00", "é", "x"]), max_size=4
).map("".join)
bodies = st.one_of(
    st.text(max_size=200),
    # JSON escapes that decode to lone surrogates / control characters, in every string field
    st.tuples(surrogate_escapes, surrogate_escapes).map(
        lambda p: f'{{"id": "{p[0]}", "inputs": ["a{p[1]}"], "reply_to": null}}'
    ),
    json_values.map(json.dumps),
    request_like.map(json.dumps),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),  # deep nesting
)


@settings(max_examples=400, deadline=None)
@given(body=bodies)
def test_parse_never_raises_and_returns_request_or_typed_error(body: str) -> None:
    parsed = parse(body)
    assert isinstance(parsed, Request | BadRequest)
    if isinstance(parsed, BadRequest):
        assert parsed.type in ERROR_TYPES
        assert parsed.message
        # the error must fit in a result message and be JSON
        message = result_message(
            build_result(
                message_id="m",
                request_id=parsed.request_id,
                model="m",
                error=(parsed.type, parsed.message),
            )
        )
        assert json.loads(message.body)["error"]["type"] == parsed.type
        assert message.size > 0  # encodable: a valid SQS body whatever the request held
    else:
        assert parsed.inputs and all(isinstance(t, str) and t.strip() for t in parsed.inputs)
        echoed = result_message(
            build_result(
                message_id="m", request_id=parsed.id, model="m", outputs=parsed.inputs
            )
        )
        assert echoed.size > 0 and echoed.body.isascii()
        assert parsed.task == "embed"
        assert parsed.reply_to in (None, RESULT_QUEUE)




def test_request_model_has_a_json_schema_with_every_field_described() -> None:
    schema = RequestV1.model_json_schema()
    fields = {"version", "id", "task", "inputs", "parameters", "reply_to", "ttl_s", "deadline"}
    assert set(schema["properties"]) == fields
    assert schema["required"] == ["inputs"]
    assert all(p.get("description") for p in schema["properties"].values())


@settings(max_examples=300, deadline=None)
@given(body=bodies)
def test_the_fast_path_gives_what_the_slow_path_gives(body: str) -> None:
    """A valid body is parsed in one pass of pydantic-core's JSON parser; whatever that pass
    accepts must come out exactly as the json.loads path would have it."""
    fast = parse(body)
    original = RequestV1.model_validate_json
    try:
        RequestV1.model_validate_json = classmethod(  # type: ignore[method-assign,assignment]
            lambda cls, *a, **k: (_ for _ in ()).throw(ValueError("slow path"))
        )
        slow = parse(body)
    finally:
        RequestV1.model_validate_json = original  # type: ignore[method-assign]
    assert fast == slow


@pytest.mark.parametrize(
    ("body", "where"),
    [
        # integers too large for a float: they overflowed the deadline's arithmetic
        ('{"inputs": "x", "ttl_s": 1' + "0" * 400 + "}", "ttl_s"),
        ('{"inputs": "x", "deadline": 1' + "0" * 400 + "}", "deadline"),
        ('{"inputs": "x", "ttl_s": 1e308}', "ttl_s"),
        # legal JSON, but no tokenizer takes it
        ('{"inputs": ["fine", "ok \\ud800 text"]}', "input 1 holds a lone surrogate"),
    ],
)
def test_values_json_allows_but_nothing_downstream_can_take_are_refused(
    body: str, where: str
) -> None:
    parsed = parse(body)
    assert isinstance(parsed, BadRequest) and parsed.type == "InvalidRequest", parsed
    assert where in parsed.message


def test_an_error_message_never_echoes_a_huge_field_name_whole() -> None:
    """A 240 KB field name, echoed whole, made a 720 KB error result: too large to send."""
    key = "\U0001f600" * 60_000
    body = json.dumps({"inputs": "x", key: 1}, ensure_ascii=False)
    parsed = parse(body)
    assert isinstance(parsed, BadRequest) and parsed.type == "InvalidRequest"
    assert len(parsed.message) <= 600
    message = result_message(build_result(
        message_id="m", request_id=None, model="m", error=(parsed.type, parsed.message)
    ))
    assert message.size < 4096
