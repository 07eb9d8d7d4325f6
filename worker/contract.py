"""Message contract v1: request parsing and validation, result building, result sizing, the S3
claim-check pointer format and the duplicate key. Pure: no I/O, no clock, no model.

Request body (JSON object):
    {"id": "<caller id, optional>", "task": "embed|classify|generate (optional)",
     "inputs": "text" | ["text", ...], "parameters": {...}, "reply_to": "<queue url, optional>",
     "version": 1 (optional)}

Result body (JSON object):
    {"version": 1, "id": ..., "message_id": ..., "status": "ok"|"error",
     "outputs": [...] | "error": {"type": ..., "message": ...}, "model": ...,
     "timings": {"queue_wait_s": ..., "in_worker_s": ..., "inference_s": ...}}
with message attributes `gpuqueue-message-id` (the dedup key) and `gpuqueue-request-id`.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

CONTRACT_VERSION = 1
TASKS: tuple[str, ...] = ("embed", "classify", "generate")
MAX_INPUTS_PER_REQUEST = 1024
MAX_ID_CHARS = 256

# Result message attributes: the consumer drops a second result carrying a message id it has
# already seen (at-least-once delivery can produce one when a delete is lost).
ATTR_MESSAGE_ID = "gpuqueue-message-id"
ATTR_REQUEST_ID = "gpuqueue-request-id"

# The AWS SQS Extended Client's claim-check format (Java and Python clients read it).
S3_POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
ATTR_EXTENDED_SIZE = "ExtendedPayloadSize"

# SendMessageBatch takes at most this many entries.
SQS_BATCH_MAX_ENTRIES = 10

ErrorType = Literal[
    "BodyTooLarge",
    "InvalidJSON",
    "InvalidRequest",
    "EmptyInputs",
    "TooManyInputs",
    "UnknownTask",
    "UnsupportedTask",
    "ReplyToNotAllowed",
    "InputTooLong",
    "OutOfMemory",
    "ResultTooLarge",
    "NoResultDestination",
]


@dataclass(frozen=True)
class Request:
    """A valid request, ready to be tokenised."""

    id: str | None
    task: str
    inputs: list[str]
    parameters: dict[str, Any]
    reply_to: str | None


@dataclass(frozen=True)
class BadRequest:
    """A request that gets an error result and is deleted at once (never retried)."""

    type: str
    message: str
    request_id: str | None = None
    reply_to: str | None = None


class _RequestV1(BaseModel):
    # strict: "inputs": 5 is a schema error, not "5"; forbid: "input" (a typo) is an error too.
    model_config = ConfigDict(strict=True, extra="forbid")

    version: StrictInt | None = None
    id: StrictStr | None = Field(None, max_length=MAX_ID_CHARS)
    task: StrictStr | None = None
    inputs: StrictStr | list[StrictStr]
    parameters: dict[StrictStr, Any] = Field(default_factory=dict)
    reply_to: StrictStr | None = None


_ARN_RE = re.compile(r"^arn:[^:]+:sqs:[^:]*:[^:]*:[^:]+$")
_SQS_HOST_RE = re.compile(
    r"^(?:sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|([a-z0-9-]+)\.queue\.amazonaws\.com)$"
)


def queue_arn_for_url(url: str, default_region: str) -> str | None:
    """The SQS ARN a queue URL names (`https://sqs.R.amazonaws.com/ACCOUNT/NAME`).

    Other hosts (local emulators, VPC endpoints) carry no region, so `default_region` stands in.
    """
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) != 2:
        return None
    host = (parsed.hostname or "").lower()
    match = _SQS_HOST_RE.match(host)
    region = (match.group(1) or match.group(2)) if match else default_region
    return f"arn:aws:sqs:{region}:{parts[0]}:{parts[1]}"


def reply_to_allowed(
    reply_to: str, patterns: Sequence[str], always_allowed: Iterable[str] = (), region: str = ""
) -> bool:
    """Whether a request may name `reply_to`: an exact always-allowed URL (the result queue), a
    URL prefix from the allow-list, or an SQS ARN pattern (fnmatch) matching the URL's ARN."""
    if reply_to in set(always_allowed):
        return True
    parsed = urlparse(reply_to)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return False
    arn = queue_arn_for_url(reply_to, region)
    for pattern in patterns:
        if _ARN_RE.match(pattern) or pattern.startswith("arn:"):
            if arn is not None and fnmatch.fnmatchcase(arn, pattern):
                return True
        elif reply_to.startswith(pattern):
            return True
    return False


_SQS_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_safe(text: str) -> bool:
    """Whether SQS can carry `text` in a message attribute (its allowed Unicode ranges)."""
    return _SQS_UNSAFE.search(text) is None


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    loc = ".".join(str(part) for part in item["loc"]) or "body"
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{loc}: {item['msg']}{extra}"


def parse_request(
    body: str,
    *,
    worker_task: str,
    max_body_bytes: int,
    reply_to_patterns: Sequence[str] = (),
    always_allowed_reply_to: Iterable[str] = (),
    region: str = "",
) -> Request | BadRequest:
    """Parse and validate one SQS message body. Never raises: returns a Request or a BadRequest."""
    try:
        size = len(body.encode("utf-8", "surrogatepass"))
    except Exception:  # pragma: no cover - str.encode with surrogatepass accepts any str
        size = len(body) * 4
    if size > max_body_bytes:
        return BadRequest(
            "BodyTooLarge", f"body is {size} bytes; this worker accepts {max_body_bytes}"
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return BadRequest("InvalidJSON", f"body is not JSON: {str(exc)[:200]}")
    if not isinstance(data, dict):
        return BadRequest(
            "InvalidRequest", f"body must be a JSON object, not {type(data).__name__}"
        )
    # the caller's id and reply_to are kept even when the rest is invalid, so the error can
    # reach the caller and be matched to its request.
    raw_id = data.get("id")
    request_id = (
        raw_id
        if isinstance(raw_id, str) and len(raw_id) <= MAX_ID_CHARS and sqs_safe(raw_id)
        else None
    )
    raw_reply = data.get("reply_to")
    reply_to = raw_reply if isinstance(raw_reply, str) else None
    if reply_to is not None and not (reply_to.isascii() and reply_to.isprintable()):
        return BadRequest(
            "ReplyToNotAllowed", "reply_to must be a plain ASCII queue URL", request_id, None
        )
    if reply_to is not None and not reply_to_allowed(
        reply_to, reply_to_patterns, always_allowed_reply_to, region
    ):
        # never write anywhere the allow-list does not name, not even the error
        return BadRequest(
            "ReplyToNotAllowed",
            f"reply_to {reply_to[:300]!r} is not on this worker's allow-list "
            "(WORKER_REPLY_TO_ALLOW)",
            request_id,
            None,
        )
    try:
        parsed = _RequestV1.model_validate(data)
    except ValidationError as exc:
        return BadRequest("InvalidRequest", _first_error(exc), request_id, reply_to)
    except RecursionError:
        return BadRequest("InvalidRequest", "body is nested too deeply", request_id, reply_to)
    if parsed.id is not None and not sqs_safe(parsed.id):
        return BadRequest(
            "InvalidRequest", "id holds characters SQS cannot carry (e.g. a lone surrogate)"
        )
    if parsed.version is not None and parsed.version != CONTRACT_VERSION:
        return BadRequest(
            "InvalidRequest",
            f"version {parsed.version} is not supported (this worker speaks {CONTRACT_VERSION})",
            request_id,
            reply_to,
        )
    task = parsed.task if parsed.task is not None else worker_task
    if task not in TASKS:
        return BadRequest(
            "UnknownTask",
            f"task {task[:100]!r} is not one of {', '.join(TASKS)}",
            request_id,
            reply_to,
        )
    if task != worker_task:
        return BadRequest(
            "UnsupportedTask",
            f"this worker serves task {worker_task!r}, not {task!r}; send it to that task's queue",
            request_id,
            reply_to,
        )
    inputs = [parsed.inputs] if isinstance(parsed.inputs, str) else list(parsed.inputs)
    if not inputs:
        return BadRequest("EmptyInputs", "inputs is an empty list", request_id, reply_to)
    if len(inputs) > MAX_INPUTS_PER_REQUEST:
        return BadRequest(
            "TooManyInputs",
            f"{len(inputs)} inputs; at most {MAX_INPUTS_PER_REQUEST} per request",
            request_id,
            reply_to,
        )
    empty = [i for i, text in enumerate(inputs) if not text.strip()]
    if empty:
        return BadRequest("EmptyInputs", f"input {empty[0]} is empty", request_id, reply_to)
    return Request(parsed.id, task, inputs, dict(parsed.parameters), reply_to)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Timings:
    queue_wait_s: float  # SentTimestamp -> received by this worker
    in_worker_s: float  # received -> result built
    inference_s: float  # the model call of the batch this request ran in


def build_result(
    *,
    message_id: str,
    request_id: str | None,
    model: str,
    outputs: list[Any] | None = None,
    error: tuple[str, str] | None = None,
    timings: Timings | None = None,
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
        result["error"] = {"type": error[0], "message": error[1]}
    result["model"] = model
    t = timings or Timings(0.0, 0.0, 0.0)
    result["timings"] = {
        "queue_wait_s": round(t.queue_wait_s, 6),
        "in_worker_s": round(t.in_worker_s, 6),
        "inference_s": round(t.inference_s, 6),
    }
    return result


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for SendMessage(Batch): body plus message attributes in boto3's shape."""

    body: str
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return message_size(self.body, self.attributes)


def dedup_key(message_id: str) -> str:
    """The key a consumer uses to drop duplicate results: the request's SQS message id.

    One SQS message yields one result; a second result for the same message id can only be a
    redelivery (the first delete was lost), so it is safe to drop."""
    return message_id


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
    """`result` as compact ASCII-only JSON (the same document json.dumps(ensure_ascii=True,
    allow_nan=False) writes, numbers possibly spelled differently).

    orjson writes a 384-float embedding result ~10x faster than json.dumps (bench/
    pipeline_overhead.py measures the pipeline with each). It writes UTF-8 and NaN as null, so:
    non-ASCII characters (only ever inside strings) are escaped after, and what orjson refuses
    (a lone surrogate, an int over 64 bits) or a non-finite float goes through json.dumps, which
    escapes the one and raises ValueError on the other, as before."""
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
    # ASCII-only JSON: a lone surrogate echoed from a request (valid as a JSON escape) or a control
    # character a model generated would otherwise make the body unsendable (SQS accepts only some
    # Unicode ranges); escaped, every result is a valid SQS body.
    body = result_json(result)
    attributes = {
        ATTR_MESSAGE_ID: {
            "DataType": "String",
            "StringValue": dedup_key(str(result["message_id"])),
        },
    }
    if result.get("id"):
        attributes[ATTR_REQUEST_ID] = {"DataType": "String", "StringValue": str(result["id"])}
    return OutgoingMessage(body, attributes)


def message_size(body: str, attributes: Mapping[str, Mapping[str, str]]) -> int:
    """Bytes SQS counts against MaximumMessageSize: the body plus, for each attribute, its name,
    data type and value (UTF-8)."""
    total = len(body.encode("utf-8"))
    for name, attribute in attributes.items():
        total += len(name.encode("utf-8")) + len(attribute["DataType"].encode("utf-8"))
        if "StringValue" in attribute:
            total += len(attribute["StringValue"].encode("utf-8"))
        elif "BinaryValue" in attribute:
            total += len(attribute["BinaryValue"])
    return total


def needs_offload(message: OutgoingMessage, max_message_size: int) -> bool:
    return message.size > max_message_size


def s3_pointer_message(message: OutgoingMessage, bucket: str, key: str) -> OutgoingMessage:
    """The claim-check that replaces a too-large message, as the SQS Extended Client writes it:
    the body names the S3 object, the attributes stay, and `ExtendedPayloadSize` holds the
    original body's size."""
    body = json.dumps([S3_POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])
    attributes = dict(message.attributes)
    attributes[ATTR_EXTENDED_SIZE] = {
        "DataType": "Number",
        "StringValue": str(len(message.body.encode("utf-8"))),
    }
    return OutgoingMessage(body, attributes)


def parse_s3_pointer(body: str) -> tuple[str, str] | None:
    """(bucket, key) when `body` is an Extended Client S3 pointer, else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(data, list)
        and len(data) == 2
        and data[0] == S3_POINTER_CLASS
        and isinstance(data[1], dict)
        and isinstance(data[1].get("s3BucketName"), str)
        and isinstance(data[1].get("s3Key"), str)
    ):
        return data[1]["s3BucketName"], data[1]["s3Key"]
    return None


def pack_send_batches(messages: Sequence[OutgoingMessage], max_batch_bytes: int) -> list[list[int]]:
    """Split messages (by index, order kept) into SendMessageBatch calls: at most 10 entries and
    at most `max_batch_bytes` summed payload per call. Every message must fit on its own."""
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, message in enumerate(messages):
        size = message.size
        if size > max_batch_bytes:
            raise ValueError(f"message {index} is {size} bytes, over the {max_batch_bytes} limit")
        if current and (
            len(current) == SQS_BATCH_MAX_ENTRIES or current_bytes + size > max_batch_bytes
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        batches.append(current)
    return batches
