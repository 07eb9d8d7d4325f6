"""The client's exceptions, in one place.

    GpuqueueError
    ├── RequestFailed    a result came back with status "error" (its type and message kept)
    ├── ResultTimeout    not every awaited result arrived in time (the missing ids kept)
    ├── SubmitFailed     some requests could not be put on the queue (ids and reasons kept;
    │                    the ids that were sent too)
    └── InvalidRequest   a request is invalid or too large; nothing was sent (also a
                         ValueError; its index among the requests kept)

    SubmitInterrupted    Ctrl-C during submit_many (a KeyboardInterrupt, so `except Exception`
                         does not swallow it), with what was sent and what was not
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpuqueue.results import Result


class GpuqueueError(Exception):
    """Base of every exception the client raises on purpose."""


class RequestFailed(GpuqueueError):
    """A request's result is an error (`error_type` is one of the contract's error types)."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.request_id = result.id
        self.error_type = result.error.type if result.error else "Unknown"
        self.error_message = result.error.message if result.error else ""
        super().__init__(f"request {self.request_id}: {self.error_type}: {self.error_message}")


class ResultTimeout(GpuqueueError):
    """Some awaited results did not arrive within `timeout_s`."""

    def __init__(self, missing: Collection[str], timeout_s: float) -> None:
        self.missing = sorted(missing)
        self.timeout_s = timeout_s
        shown = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
        super().__init__(
            f"{len(self.missing)} result(s) not received within {timeout_s:g} s: {shown}"
        )


class SubmitFailed(GpuqueueError):
    """Requests SQS refused even after retries: `failed` maps their ids to the reason; `sent`
    lists the ids that did go out (so a caller can retry exactly the rest)."""

    def __init__(
        self, failed: Mapping[str, str], sent: Collection[str], ids: Collection[str] = ()
    ) -> None:
        self.failed = dict(failed)
        self.sent = list(sent)
        self.ids = list(ids)  # every request's id, in the order given
        first_id, first_reason = next(iter(self.failed.items()))
        super().__init__(
            f"{len(self.failed)} request(s) not sent ({len(self.sent)} sent); "
            f"{first_id}: {first_reason}"
        )


class SubmitInterrupted(KeyboardInterrupt):
    """Ctrl-C while submit_many was sending: `sent` went out, `failed` (id -> why) did not, or
    may have ("interrupted while being sent"); `ids` in the order given."""

    def __init__(
        self, failed: Mapping[str, str], sent: Collection[str], ids: Collection[str]
    ) -> None:
        self.failed = dict(failed)
        self.sent = list(sent)
        self.ids = list(ids)
        super().__init__(f"interrupted: {len(self.sent)} sent, {len(self.failed)} not")


class InvalidRequest(GpuqueueError, ValueError):
    """Request `index` (0-based, in the order given) cannot be sent: invalid (`reason` names the
    field) or over the queue's size limit. Nothing was sent. A ValueError too, as before; the
    index lets a caller name where the request came from (the CLI: its file and line)."""

    def __init__(self, index: int, reason: str, request_id: str | None = None) -> None:
        self.index = index
        self.reason = reason
        self.request_id = request_id
        named = f"request {index}" + (f" (id {request_id})" if request_id else "")
        super().__init__(f"{named}: {reason}")
