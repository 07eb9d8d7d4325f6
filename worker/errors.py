"""The worker's exception tree, drawn in one place.

    WorkerError
    ├── ConfigError              a setting is missing or wrong: one line at start, exit code 2
    ├── RequestRejected          one request is bad for good: an error result of `error_type`,
    │   │                        then the request is deleted (it never comes back)
    │   ├── InputTooLong         longer than the model (or WORKER_MAX_INPUT_TOKENS) allows
    │   ├── InvalidParameters    a parameter the task does not know, or a bad value
    │   └── ImageRejected        an image input that can never be served (image tasks):
    │                            InvalidImage, ImageTooLarge, ImageSourceNotAllowed,
    │                            ImageFetchFailed (the store answered 403/404)
    ├── RequestDeferred          one request cannot be served *now* (a store answered 5xx): it is
    │                            left for redelivery after a back-off, and the DLQ after
    │                            maxReceiveCount
    └── DestinationUnreachable   a result destination that can never be written (no such queue,
                                 access denied): retrying the request cannot help

`RequestRejected` subclasses are also `ValueError`s, the model adapter's historical word for bad
input, so callers that catch ValueError keep working.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every exception the worker raises on purpose."""


class ConfigError(WorkerError):
    """A setting is missing or wrong; str() is the one line printed at start."""


class RequestRejected(WorkerError, ValueError):
    """A request that gets an error result and is deleted at once (never retried)."""

    error_type = "InvalidRequest"


class InputTooLong(RequestRejected):
    """An input longer than the model (or WORKER_MAX_INPUT_TOKENS) allows; never truncated."""

    error_type = "InputTooLong"

    def __init__(self, index: int, n_tokens: int, limit: int, detail: str = "") -> None:
        self.index = index
        self.n_tokens = n_tokens
        self.limit = limit
        super().__init__(
            detail or f"input {index} has {n_tokens} tokens; the limit is {limit} tokens"
        )


class InvalidParameters(RequestRejected):
    """A parameter the task does not take, or a value out of its range."""

    error_type = "InvalidParameters"


class ImageRejected(RequestRejected):
    """An image input that can never be served; `error_type` says why (see error_types)."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        super().__init__(message)


class RequestDeferred(WorkerError):
    """A request that cannot be served now for a reason outside it; it comes back later."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        super().__init__(message)


class DestinationUnreachable(WorkerError):
    """A result destination that does not exist or that this worker may not write."""

    def __init__(self, destination: str, code: str) -> None:
        self.destination = destination
        self.code = code
        super().__init__(f"{destination}: {code}")


#: SQS error codes of a queue that is gone or refuses us (its policy, or its KMS key): permanent
QUEUE_UNREACHABLE_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        # a queue URL of another region sent to this region's endpoint ("The address ... is
        # not valid for this endpoint"): the same at every retry
        "InvalidAddress",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of an SQS error (worker.sqs_transport's, or a botocore ClientError,
    read without importing botocore), else the exception's type name."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
