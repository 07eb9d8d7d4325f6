"""Result documents: built from an output or an error, written as compact ASCII JSON, wrapped into
the message that carries them. Pure.

    {"version": 1, "id": ..., "message_id": ..., "status": "ok"|"error",
     "outputs": [...] | "error": {"type": ..., "message": ...}, "model": ...,
     "timings": {"queue_wait_s": ..., "in_worker_s": ..., "inference_s": ...}}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.contract.request import CONTRACT_VERSION
from worker.contract.wire import result_attributes
from worker.seams import OutgoingMessage

try:  # the worker's extra brings orjson; a producer's `pip install gpuqueue` does not
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    orjson = None  # type: ignore[assignment]


class ErrorBody(BaseModel):
    type: str = Field(description="one of the error types in the contract's error table")
    message: str = Field(description="what was wrong, for a human")


class TimingsV1(BaseModel):
    queue_wait_s: float = Field(description="SentTimestamp to the worker's receive")
    in_worker_s: float = Field(description="the worker's receive to the result being built")
    inference_s: float = Field(description="the model call of the batch this request ran in")


class ResultV1(BaseModel):
    """A result body, version 1 (the JSON Schema in the docs is generated from this model)."""

    model_config = ConfigDict(title="gpuqueue result v1")

    version: int = Field(CONTRACT_VERSION, description="contract version")
    id: str | None = Field(description="the request's `id`, when it had one")
    message_id: str = Field(description="the request's SQS message id: the duplicate key")
    status: Literal["ok", "error"]
    outputs: list[Any] | None = Field(None, description="one output per input (status ok)")
    error: ErrorBody | None = Field(None, description="what went wrong (status error)")
    model: str = Field(description="the model that answered (WORKER_MODEL_NAME)")
    timings: TimingsV1


@dataclass(frozen=True)
class Timings:
    queue_wait_s: float  # SentTimestamp -> received by this worker
    in_worker_s: float  # received -> result built
    inference_s: float  # the model call of the batch this request ran in


NO_TIMINGS = Timings(0.0, 0.0, 0.0)

# An error message may quote the request (an unknown parameter's name): a lone surrogate there,
# written as a \ud800 escape, is valid JSON but not valid Unicode, and strict readers (pydantic's,
# serde's) refused the whole result; gpuqueue's client left it on the queue for good. The id
# is echoed as the producer sent it (it is theirs to match); a message's text needs no such care.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


#: an error result's message at most: each error names what is wrong in a line; one that echoed
#: a request's value whole made a 256 KB request a 768 KB answer
MAX_ERROR_MESSAGE_CHARS = 1000


def build_result(
    *,
    message_id: str,
    request_id: str | None,
    model: str,
    outputs: list[Any] | None = None,
    error: tuple[str, str] | None = None,
    timings: Timings = NO_TIMINGS,
) -> dict[str, Any]:
    """The result document for one request: `outputs` (status ok) or `error` (type, message)."""
    if (outputs is None) == (error is None):
        raise ValueError("exactly one of outputs and error")
    result: dict[str, Any] = {
        "version": CONTRACT_VERSION,
        "id": request_id,
        "message_id": message_id,
        "status": "ok" if error is None else "error",
    }
    if error is None:
        result["outputs"] = outputs
    else:
        message = error[1]
        if len(message) > MAX_ERROR_MESSAGE_CHARS:  # a backstop: what a request said, echoed
            message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
        result["error"] = {"type": error[0], "message": _LONE_SURROGATE.sub("\ufffd", message)}
    result["model"] = model
    result["timings"] = {
        "queue_wait_s": round(timings.queue_wait_s, 6),
        "in_worker_s": round(timings.in_worker_s, 6),
        "inference_s": round(timings.inference_s, 6),
    }
    return result


_NON_ASCII = re.compile("[^\x00-\x7f]")


def _escape_non_ascii(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as json.dumps writes it
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def stdlib_result_json(result: Mapping[str, Any]) -> str:
    """The reference encoding of a result: compact, ASCII-only, NaN/infinity refused."""
    return json.dumps(result, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def result_json(result: Mapping[str, Any]) -> str:
    """`result` as compact ASCII-only JSON (the document json.dumps(ensure_ascii=True,
    allow_nan=False) writes, numbers possibly spelled differently).

    ASCII-only: a lone surrogate echoed from a request (valid as a JSON escape) or a control
    character a model generated would otherwise make the body unsendable (SQS accepts only some
    Unicode ranges). orjson writes a 384-float embedding ~10x faster than json.dumps; it writes
    UTF-8 and NaN as null, so non-ASCII characters (only ever inside strings) are escaped after,
    and what orjson refuses (a lone surrogate, an int over 64 bits) or a non-finite float goes
    through json.dumps, which escapes the one and raises ValueError on the other."""
    if orjson is None:
        return stdlib_result_json(result)
    try:
        body = orjson.dumps(result).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError: lone surrogate, huge int, unknown type
        return stdlib_result_json(result)
    if "null" in body and _has_non_finite(result):
        return stdlib_result_json(result)
    if not body.isascii():
        body = _NON_ASCII.sub(_escape_non_ascii, body)
    return body


def _has_non_finite(value: Any) -> bool:
    """Whether a NaN or infinity hides in `value` (orjson would write it as null)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        try:
            total = sum(value)  # one C loop over a vector of floats: NaN/inf make the sum so
        except TypeError:  # not all numbers: look inside each
            return any(_has_non_finite(v) for v in value)
        if isinstance(total, float) and not math.isfinite(total):  # or the sum overflowed
            return any(isinstance(v, float) and not math.isfinite(v) for v in value)
        return False
    return False


def result_message(result: Mapping[str, Any]) -> OutgoingMessage:
    """The message that carries `result`, keyed for duplicate detection."""
    request_id = result.get("id")
    return OutgoingMessage(
        result_json(result),
        result_attributes(str(result["message_id"]), str(request_id) if request_id else None),
    )
