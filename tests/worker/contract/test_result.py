"""Result documents: the body and dedup attributes, errors, and the JSON encoding (orjson with
the stdlib's document as the reference)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.contract.result import ResultV1, Timings, build_result, result_json, result_message
from worker.contract.wire import ATTR_MESSAGE_ID, ATTR_REQUEST_ID, sqs_safe


def test_result_body_and_dedup_attributes() -> None:
    result = build_result(
        message_id="mid-1",
        request_id="rid-1",
        model="mini",
        outputs=[[0.1, 0.2]],
        timings=Timings(1.5, 0.25, 0.125),
    )
    message = result_message(result)
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
    assert message.attributes[ATTR_MESSAGE_ID]["StringValue"] == "mid-1"
    assert message.attributes[ATTR_REQUEST_ID]["StringValue"] == "rid-1"


def test_error_result_has_no_outputs() -> None:
    result = build_result(
        message_id="m", request_id=None, model="x", error=("InvalidJSON", "bad")
    )
    assert result["status"] == "error" and "outputs" not in result
    assert result["error"] == {"type": "InvalidJSON", "message": "bad"}
    assert ATTR_REQUEST_ID not in result_message(result).attributes
    with pytest.raises(ValueError):
        build_result(message_id="m", request_id=None, model="x")


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
            result_json(result)
        return
    body = result_json(result)
    assert body.isascii()
    assert json.dumps(json.loads(body)) == json.dumps(json.loads(expected))


@pytest.mark.parametrize(
    "text", ["\ud800", "a\udfffb", "é😀\u2028", "\x00\x1f", "\U0010ffff", "日本語"]
)
def test_result_json_escapes_what_sqs_cannot_carry_exactly_like_json_dumps(text: str) -> None:
    # lone surrogates (orjson refuses them) and non-ASCII characters (orjson writes UTF-8)
    result = {"id": text, "outputs": [[0.5, -0.25]]}
    assert result_json(result) == stdlib_json(result)
    assert sqs_safe(result_json(result))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_result_json_refuses_non_finite_floats(bad: float) -> None:
    with pytest.raises(ValueError):
        result_json({"id": None, "outputs": [[0.1, bad, 0.2]]})
    with pytest.raises(ValueError):
        result_json({"id": None, "outputs": [{"score": bad}]})


def test_result_json_keeps_large_finite_vectors_whose_sum_overflows() -> None:
    result = {"id": None, "outputs": [[1e308, 1e308]]}
    assert json.loads(result_json(result)) == result




def test_built_results_validate_against_the_published_model() -> None:
    ok = build_result(message_id="m", request_id="r", model="x", outputs=[[0.5]])
    error = build_result(message_id="m", request_id=None, model="x", error=("InvalidJSON", "bad"))
    assert ResultV1.model_validate(ok).status == "ok"
    parsed = ResultV1.model_validate(error)
    assert parsed.error is not None and parsed.error.type == "InvalidJSON"


def test_an_error_message_quoting_a_lone_surrogate_is_valid_unicode() -> None:
    """An unknown parameter named "\\ud800" was quoted in the InvalidParameters message as the
    escape \\ud800: valid JSON, not valid Unicode, and strict parsers (pydantic's, Rust's serde)
    refused the whole result. The message carries U+FFFD in its place."""
    import pydantic_core

    result = build_result(message_id="m", request_id="a", model="x",
                          error=("InvalidParameters", "unknown parameter(s): \ud800"))
    body = result_json(result)
    assert json.loads(body)["error"]["message"] == "unknown parameter(s): \ufffd"
    pydantic_core.from_json(body)  # a strict parser reads it


def test_an_error_message_is_bounded_whatever_it_echoes() -> None:
    from worker.contract.result import MAX_ERROR_MESSAGE_CHARS

    result = build_result(message_id="m", request_id="r", model="x",
                          error=("InvalidParameters", "not " + "x" * 100_000))
    assert len(result["error"]["message"]) == MAX_ERROR_MESSAGE_CHARS
    assert result["error"]["message"].endswith("...")
