"""Message contract: request parsing (examples + a property over arbitrary bodies), result
building and sizing, the S3 pointer format, SendMessageBatch packing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import contract
from worker.contract import BadRequest, OutgoingMessage, Request, parse_request

US = "https://sqs.us-east-1.amazonaws.com/123456789012/"
EU = "https://sqs.eu-west-1.amazonaws.com/123456789012/"
RESULT_QUEUE = US + "results"


def parse(body: Any, **kwargs: Any) -> Request | BadRequest:
    text = body if isinstance(body, str) else json.dumps(body)
    options: dict[str, Any] = {
        "worker_task": "embed",
        "max_body_bytes": 262_144,
        "reply_to_patterns": (),
        "always_allowed_reply_to": [RESULT_QUEUE],
        "region": "us-east-1",
    }
    options.update(kwargs)
    return parse_request(text, **options)


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


def test_reply_to_not_on_allow_list_is_refused_and_never_used() -> None:
    other = "https://sqs.us-east-1.amazonaws.com/999999999999/somebody-elses-queue"
    parsed = parse({"id": "r", "inputs": "a", "reply_to": other})
    assert isinstance(parsed, BadRequest)
    assert parsed.type == "ReplyToNotAllowed"
    assert parsed.reply_to is None  # the error goes to the default result queue, not `other`


@pytest.mark.parametrize(
    ("reply_to", "patterns", "allowed"),
    [
        (RESULT_QUEUE, (), True),  # the configured result queue is always allowed
        (US + "team-a-out", (US + "team-a-",), True),
        (US + "team-b-out", (US + "team-a-",), False),
        (EU + "res-1", ("arn:aws:sqs:eu-west-1:123456789012:res-*",), True),
        (US + "res-1", ("arn:aws:sqs:eu-west-1:123456789012:res-*",), False),
        (EU + "other", ("arn:aws:sqs:*:123456789012:res-*",), False),
        ("http://127.0.0.1:9324/000000000000/res-x", ("arn:aws:sqs:us-east-1:*:res-*",), True),
        ("file:///etc/passwd", ("file:",), False),
    ],
)  # fmt: skip
def test_reply_to_allow_list(reply_to: str, patterns: tuple[str, ...], allowed: bool) -> None:
    parsed = parse({"inputs": "a", "reply_to": reply_to}, reply_to_patterns=patterns)
    assert isinstance(parsed, Request) is allowed, parsed
    if allowed:
        assert isinstance(parsed, Request)
        assert parsed.reply_to == reply_to


def test_queue_arn_for_url() -> None:
    assert (
        contract.queue_arn_for_url("https://sqs.eu-west-1.amazonaws.com/1234/q", "us-east-1")
        == "arn:aws:sqs:eu-west-1:1234:q"
    )
    assert (
        contract.queue_arn_for_url("http://localhost:4566/000000000000/q", "us-east-1")
        == "arn:aws:sqs:us-east-1:000000000000:q"
    )
    assert contract.queue_arn_for_url("https://example.com/just-one-part", "r") is None


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
)  # fmt: skip
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
        assert parsed.type in contract.ErrorType.__args__  # type: ignore[attr-defined]
        assert parsed.message
        # the error must fit in a result message and be JSON
        message = contract.result_message(
            contract.build_result(
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
        echoed = contract.result_message(
            contract.build_result(
                message_id="m", request_id=parsed.id, model="m", outputs=parsed.inputs
            )
        )
        assert echoed.size > 0 and echoed.body.isascii()
        assert parsed.task == "embed"
        assert parsed.reply_to in (None, RESULT_QUEUE)


# ---------------------------------------------------------------- results


def test_result_body_and_dedup_attributes() -> None:
    result = contract.build_result(
        message_id="mid-1",
        request_id="rid-1",
        model="mini",
        outputs=[[0.1, 0.2]],
        timings=contract.Timings(1.5, 0.25, 0.125),
    )
    message = contract.result_message(result)
    body = json.loads(message.body)
    assert body == {
        "version": 1,
        "id": "rid-1",
        "message_id": "mid-1",
        "status": "ok",
        "outputs": [[0.1, 0.2]],
        "model": "mini",
        "timings": {"queue_wait_s": 1.5, "in_worker_s": 0.25, "inference_s": 0.125},
    }
    assert message.attributes[contract.ATTR_MESSAGE_ID]["StringValue"] == "mid-1"
    assert message.attributes[contract.ATTR_REQUEST_ID]["StringValue"] == "rid-1"


def test_error_result_has_no_outputs() -> None:
    result = contract.build_result(
        message_id="m", request_id=None, model="x", error=("InvalidJSON", "bad")
    )
    assert result["status"] == "error" and "outputs" not in result
    assert result["error"] == {"type": "InvalidJSON", "message": "bad"}
    assert contract.ATTR_REQUEST_ID not in contract.result_message(result).attributes
    with pytest.raises(ValueError):
        contract.build_result(message_id="m", request_id=None, model="x")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)


def stdlib_json(result: Any) -> str:
    """What result bodies were before orjson: the reference result_json must agree with."""
    return json.dumps(result, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_result_json_is_the_stdlib_document_in_ascii(value: Any) -> None:
    result = {"outputs": value}
    try:
        expected = stdlib_json(result)
    except ValueError:  # NaN/inf: refused, not written as null
        with pytest.raises(ValueError):
            contract.result_json(result)
        return
    body = contract.result_json(result)
    assert body.isascii()
    assert json.dumps(json.loads(body)) == json.dumps(json.loads(expected))


@pytest.mark.parametrize(
    "text", ["\ud800", "a\udfffb", "é😀\u2028", "\x00\x1f", "\U0010ffff", "日本語"]
)
def test_result_json_escapes_what_sqs_cannot_carry_exactly_like_json_dumps(text: str) -> None:
    # lone surrogates (orjson refuses them) and non-ASCII characters (orjson writes UTF-8)
    result = {"id": text, "outputs": [[0.5, -0.25]]}
    assert contract.result_json(result) == stdlib_json(result)
    assert contract.sqs_safe(contract.result_json(result))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_result_json_refuses_non_finite_floats(bad: float) -> None:
    with pytest.raises(ValueError):
        contract.result_json({"id": None, "outputs": [[0.1, bad, 0.2]]})
    with pytest.raises(ValueError):
        contract.result_json({"id": None, "outputs": [{"score": bad}]})


def test_result_json_keeps_large_finite_vectors_whose_sum_overflows() -> None:
    result = {"id": None, "outputs": [[1e308, 1e308]]}
    assert json.loads(contract.result_json(result)) == result


def test_message_size_counts_utf8_body_and_attribute_names_types_values() -> None:
    message = OutgoingMessage(
        "héllo",
        {
            "k": {"DataType": "String", "StringValue": "vé"},
            "n": {"DataType": "Number", "StringValue": "12"},
        },
    )
    assert message.size == len("héllo".encode()) + (1 + 6 + 3) + (1 + 6 + 2)


def test_offload_threshold_counts_attributes() -> None:
    body = "x" * 1000
    bare = OutgoingMessage(body)
    with_attr = OutgoingMessage(body, {"a": {"DataType": "String", "StringValue": "y"}})
    assert not contract.needs_offload(bare, 1000)
    assert contract.needs_offload(
        with_attr, 1000
    )  # the body alone fits; with attributes it does not


def test_s3_pointer_is_the_extended_client_format() -> None:
    original = contract.result_message(
        contract.build_result(message_id="m", request_id="r", model="x", outputs=["é" * 10])
    )
    pointer = contract.s3_pointer_message(original, "bucket-1", "results/abc.json")
    assert json.loads(pointer.body) == [
        "software.amazon.payloadoffloading.PayloadS3Pointer",
        {"s3BucketName": "bucket-1", "s3Key": "results/abc.json"},
    ]
    assert pointer.attributes["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(len(original.body.encode("utf-8"))),
    }
    assert pointer.attributes[contract.ATTR_MESSAGE_ID]["StringValue"] == "m"  # dedup survives
    assert contract.parse_s3_pointer(pointer.body) == ("bucket-1", "results/abc.json")
    assert contract.parse_s3_pointer(original.body) is None
    assert contract.parse_s3_pointer("not json") is None


def test_pack_send_batches_respects_entry_count_and_bytes() -> None:
    small = [OutgoingMessage("x" * 10) for _ in range(23)]
    assert [len(b) for b in contract.pack_send_batches(small, 1_000_000)] == [10, 10, 3]
    big = [OutgoingMessage("y" * 400) for _ in range(5)]
    batches = contract.pack_send_batches(big, 1000)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b] == list(range(5))  # order kept
    with pytest.raises(ValueError):
        contract.pack_send_batches([OutgoingMessage("z" * 2000)], 1000)
