"""Request parsing and validation: one SQS message body in, a `Request` or a `BadRequest` out.
Pure: never raises, does no I/O.

A bad request (not JSON, wrong schema, too long, unknown task, a refused reply_to) is answered with
an error result and deleted at once: it never burns GPU retries or stalls the batch it came with.
The caller's `id` and an allowed `reply_to` are kept even when the rest is invalid, so the error
can reach the caller and be matched to its request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from worker.contract.images import SHAPES, ImageRef, parse_image_input
from worker.contract.reply_to import ReplyToPolicy, ReplyToRefused
from worker.contract.wire import sqs_safe
from worker.tasks import TASKS, is_image_task

CONTRACT_VERSION = 1
MAX_INPUTS_PER_REQUEST = 1024
MAX_ID_CHARS = 256
# Finite bounds far past any real use (SQS keeps a message 14 days at most; epoch 1e11 s is the
# year 5138): a JSON integer too large for a float would overflow the deadline's arithmetic.
MAX_TTL_S = 1e9
MAX_DEADLINE = 1e11
MAX_MESSAGE_CHARS = 500  # an error message never echoes more of the request than this


class RequestV1(BaseModel):
    """A request body, version 1 (the JSON Schema in the docs is generated from this model)."""

    # strict: "inputs": 5 is a schema error, not "5"; forbid: "input" (a typo) is an error too.
    model_config = ConfigDict(strict=True, extra="forbid", title="gpuqueue request v1")

    version: StrictInt | None = Field(None, description="contract version; 1 when given")
    id: StrictStr | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="the caller's id, echoed in the result (`id` and the gpuqueue-request-id "
        "attribute)",
    )
    task: StrictStr | None = Field(
        None, description=f"one of {', '.join(TASKS)}; default: the task the worker serves"
    )
    # list[Any]: each item is checked in _rules against the task, so a wrong one is named
    inputs: StrictStr | dict[StrictStr, Any] | list[Any] = Field(
        description=f"one input, or a list of up to {MAX_INPUTS_PER_REQUEST}; one output each. "
        "Text tasks: strings. Image tasks (image-embed, image-classify): one object per image, "
        f"{SHAPES}"
    )
    parameters: dict[StrictStr, Any] = Field(
        default_factory=dict, description="task parameters (see the contract's task table)"
    )
    reply_to: StrictStr | None = Field(
        None,
        description="queue URL, SQS ARN or SNS topic ARN for this result, on the worker's "
        "allow-list; default: the worker's result queue",
    )
    ttl_s: StrictFloat | StrictInt | None = Field(
        None,
        gt=0,
        le=MAX_TTL_S,
        description="seconds after the message reached SQS (SentTimestamp) past which the "
        "request is answered DeadlineExceeded instead of being run",
    )
    deadline: StrictFloat | StrictInt | None = Field(
        None,
        gt=0,
        le=MAX_DEADLINE,
        description="epoch seconds (UTC) past which the request is answered DeadlineExceeded; "
        "with ttl_s too, the earlier of the two applies",
    )


@dataclass(frozen=True)
class Request:
    """A valid request, ready to be encoded. `reply_to`: the resolved URL its result goes to
    (None: the worker's result queue)."""

    id: str | None
    task: str
    inputs: list[str] | list[ImageRef]  # image tasks: ImageRefs; the others: texts
    parameters: dict[str, Any]
    reply_to: str | None
    ttl_s: float | None = None  # as the request gave them (worker.contract.deadline reads them)
    deadline: float | None = None


@dataclass(frozen=True)
class BadRequest:
    """A request that gets an error result of `type` and is deleted at once (never retried)."""

    type: str
    message: str
    request_id: str | None = None
    reply_to: str | None = None  # resolved, like Request.reply_to


def _first_error(error: ValidationError) -> str:
    """The first schema error, named by where it is. Cut short: a field's name is the caller's
    text, and a 200 KB one echoed whole would make an error result too large to send."""
    item = error.errors()[0]
    loc = ".".join(str(part)[:100] for part in item["loc"]) or "body"
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{loc}: {item['msg']}"[:MAX_MESSAGE_CHARS] + extra


def parse_request(
    body: str, *, worker_task: str, max_body_bytes: int, reply_to: ReplyToPolicy
) -> Request | BadRequest:
    """Parse and validate one SQS message body. Never raises: returns a Request or a BadRequest."""
    size = len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
    if size > max_body_bytes:
        return BadRequest(
            "BodyTooLarge", f"body is {size} bytes; this worker accepts {max_body_bytes}"
        )
    try:  # the common case, a valid request, in one pass of pydantic-core's JSON parser
        fast = RequestV1.model_validate_json(body)
    except (ValidationError, ValueError, RecursionError):
        pass  # the slow path finds the caller's id and reply_to, and says what is wrong
    else:
        return _checked(fast, worker_task, reply_to)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return BadRequest("InvalidJSON", f"body is not JSON: {str(exc)[:200]}")
    if not isinstance(data, dict):
        return BadRequest(
            "InvalidRequest", f"body must be a JSON object, not {type(data).__name__}"
        )
    raw_id = data.get("id")
    request_id = (
        raw_id
        if isinstance(raw_id, str) and len(raw_id) <= MAX_ID_CHARS and sqs_safe(raw_id)
        else None
    )
    destination: str | None = None
    raw_reply = data.get("reply_to")
    if raw_reply is not None:
        if not isinstance(raw_reply, str):
            return BadRequest("ReplyToNotAllowed", "reply_to must be a string", request_id)
        try:
            destination = reply_to.resolve(raw_reply)
        except ReplyToRefused as exc:
            # never write anywhere the allow-list does not name, not even the error
            return BadRequest("ReplyToNotAllowed", str(exc), request_id)
    return _validate(data, worker_task, request_id, destination)


def _checked(parsed: RequestV1, worker_task: str, reply_to: ReplyToPolicy) -> Request | BadRequest:
    """A body that is a valid RequestV1: its reply_to resolved, then the checks beyond the
    schema (the same as the slow path's, in the same order)."""
    request_id = parsed.id if parsed.id is not None and sqs_safe(parsed.id) else None
    destination: str | None = None
    if parsed.reply_to is not None:
        try:
            destination = reply_to.resolve(parsed.reply_to)
        except ReplyToRefused as exc:
            return BadRequest("ReplyToNotAllowed", str(exc), request_id)
    return _rules(parsed, worker_task, request_id, destination)


def _validate(
    data: dict[str, Any], worker_task: str, request_id: str | None, destination: str | None
) -> Request | BadRequest:
    try:
        parsed = RequestV1.model_validate(data)
    except ValidationError as exc:
        return BadRequest("InvalidRequest", _first_error(exc), request_id, destination)
    except RecursionError:
        return BadRequest("InvalidRequest", "body is nested too deeply", request_id, destination)
    return _rules(parsed, worker_task, request_id, destination)


def _rules(
    parsed: RequestV1, worker_task: str, request_id: str | None, destination: str | None
) -> Request | BadRequest:
    """What the schema cannot say: characters SQS cannot carry, the version, the task, the
    inputs' count and content."""

    def bad(error_type: str, message: str) -> BadRequest:
        return BadRequest(error_type, message, request_id, destination)

    if parsed.id is not None and not sqs_safe(parsed.id):
        return bad("InvalidRequest", "id holds characters SQS cannot carry (e.g. a lone surrogate)")
    if parsed.version is not None and parsed.version != CONTRACT_VERSION:
        return bad(
            "InvalidRequest",
            f"version {parsed.version} is not supported (this worker speaks {CONTRACT_VERSION})",
        )
    task = parsed.task if parsed.task is not None else worker_task
    if task not in TASKS:
        return bad("UnknownTask", f"task {task[:100]!r} is not one of {', '.join(TASKS)}")
    if task != worker_task:
        return bad(
            "UnsupportedTask",
            f"this worker serves task {worker_task!r}, not {task!r}; send it to that task's queue",
        )
    raw = parsed.inputs
    given: list[Any] = list(raw) if isinstance(raw, list) else [raw]
    if not given:
        return bad("EmptyInputs", "inputs is an empty list")
    if len(given) > MAX_INPUTS_PER_REQUEST:
        return bad(
            "TooManyInputs", f"{len(given)} inputs; at most {MAX_INPUTS_PER_REQUEST} per request"
        )
    inputs: list[str] | list[ImageRef]
    if is_image_task(task):
        refs: list[ImageRef] = []
        for index, value in enumerate(given):
            ref = parse_image_input(value, index)
            if isinstance(ref, str):
                return bad("InvalidRequest", f"task {task!r}: {ref}")
            refs.append(ref)
        inputs = refs
    else:
        texts: list[str] = []
        for index, value in enumerate(given):
            if not isinstance(value, str):
                kind = (
                    "an object (image objects are for the image tasks: image-embed, "
                    "image-classify)" if isinstance(value, dict) else _json_type(value)
                )
                return bad(
                    "InvalidRequest",
                    f"task {task!r} takes text inputs (strings); input {index} is {kind}",
                )
            if not value.strip():
                return bad("EmptyInputs", f"input {index} is empty")
            if not value.isascii() and not _encodable(value):
                # legal as a JSON escape ("\ud800"), but no tokenizer takes it
                return bad(
                    "InvalidRequest", f"input {index} holds a lone surrogate (not Unicode text)"
                )
            texts.append(value)
        inputs = texts
    return Request(
        parsed.id, task, inputs, dict(parsed.parameters), destination,
        ttl_s=parsed.ttl_s, deadline=parsed.deadline,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
