"""Every `error.type` a result can carry, what it means, and whether the request is final.

A *final* error is answered with an error result and the request is deleted: sending it again
unchanged gives the same answer. The others are never answered on the first tries: the request
is left in the queue for redelivery, and an error result is written only where the table says so.
The docs' error table is generated from `ERROR_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorType:
    name: str
    meaning: str
    final: bool = True
    #: what becomes of the request, where `final` alone does not say it (the docs' table)
    fate: str = ""


ERROR_TYPES: dict[str, ErrorType] = {
    e.name: e
    for e in (
        ErrorType("BodyTooLarge", "the message body is larger than WORKER_MAX_BODY_BYTES"),
        ErrorType("InvalidJSON", "the body is not JSON"),
        ErrorType(
            "InvalidRequest",
            "the body is JSON but not a request of this contract (a field is missing, of the "
            "wrong type, or unknown; an unsupported version)",
        ),
        ErrorType("EmptyInputs", "`inputs` is empty, or one of them is blank"),
        ErrorType("TooManyInputs", "more inputs than one request may carry (1,024)"),
        ErrorType("UnknownTask", "`task` is not a task this product knows"),
        ErrorType(
            "UnsupportedTask", "`task` is known, but this worker serves another: use its queue"
        ),
        ErrorType(
            "ReplyToNotAllowed",
            "`reply_to` is malformed, not on the worker's allow-list, or names the worker's own "
            "input queue or its dead-letter queue; the error goes to the result queue",
        ),
        ErrorType(
            "ReplyToUnreachable",
            "`reply_to` is allowed but does not exist or refuses this worker (QueueDoesNotExist, "
            "AccessDenied; for a topic NotFound, AuthorizationError); the error goes to the "
            "result queue",
        ),
        ErrorType(
            "DeadlineExceeded",
            "the request's `deadline` (or `ttl_s` after SentTimestamp, or WORKER_DEFAULT_TTL_S) "
            "passed before it ran; it was never given to the model",
        ),
        ErrorType(
            "InputTooLong", "an input has more tokens than the model allows; never truncated"
        ),
        ErrorType("InvalidParameters", "`parameters` holds an unknown name or a bad value"),
        ErrorType(
            "InvalidImage",
            "an image input (image tasks) is not an image the worker decodes: bad base64, an "
            "unknown or unsupported format (wrong magic bytes), a truncated or corrupt file",
        ),
        ErrorType(
            "ImageTooLarge",
            "an image input is larger than WORKER_IMAGE_MAX_BYTES, or its dimensions are more "
            "pixels than WORKER_IMAGE_MAX_PIXELS (decompression bombs); or a request holds more "
            "images than WORKER_IMAGE_MAX_PER_REQUEST",
        ),
        ErrorType(
            "ImageSourceNotAllowed",
            "an image's bucket is not on WORKER_IMAGE_S3_BUCKETS, its URL's host not on "
            "WORKER_IMAGE_URL_ALLOW, or the host (or a redirect) resolves to a private, loopback "
            "or link-local address not on WORKER_IMAGE_ALLOW_NETWORKS",
        ),
        ErrorType(
            "ImageFetchFailed",
            "an image could not be read: final when the store answered 403/404 (or another "
            "4xx, or too many redirects); transient when it answered 5xx, timed out or could "
            "not be reached, then the request is left for redelivery",
            fate="403/404: answered with this error, deleted; 5xx or a timeout: left for "
            "redelivery",
        ),
        ErrorType(
            "OutOfMemory", "the request does not fit in device memory even alone in its batch"
        ),
        ErrorType(
            "ResultTooLarge",
            "the result is larger than the result queue's MaximumMessageSize and no "
            "WORKER_RESULT_S3_URI is set",
        ),
        ErrorType(
            "ModelError",
            "the forward pass failed for this request (after its batch was split to isolate it); "
            "retried by redelivery, the DLQ after maxReceiveCount",
            final=False,
        ),
        ErrorType(
            "DeviceError",
            "the accelerator failed (a CUDA error): not the request's fault; it goes back to the "
            "queue for another replica, and the worker's circuit breaker counts it",
            final=False,
        ),
        ErrorType(
            "ResultWriteFailed",
            "the result could not be written (SQS or S3 failing); the request is retried",
            final=False,
        ),
    )
}


def is_final(error_type: str) -> bool:
    known = ERROR_TYPES.get(error_type)
    return known.final if known is not None else True
