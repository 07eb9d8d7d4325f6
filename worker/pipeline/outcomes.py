"""What becomes of each held message, decided in one place. Pure: no I/O, the clock passed in.

An `Outcome` is either SEND (write this result to this destination, then delete the request) or
RELEASE (set the message's visibility back, after a back-off: SQS redelivers it, and the redrive
policy moves it to the DLQ after maxReceiveCount). Nothing is deleted without a result written
somewhere: a request with no destination at all is released, and ends in the DLQ.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.contract.result import Timings, build_result
from worker.pipeline.ledger import Job
from worker.seams import ModelFailure, Outputs

RELEASED = "released"  # the label of a plain release (drain, circuit breaker): not a failure
NO_DESTINATION = "NoResultDestination"
DEADLINE_EXCEEDED = "DeadlineExceeded"


class Action(enum.Enum):
    SEND = "send"
    RELEASE = "release"


@dataclass(frozen=True)
class Outcome:
    job: Job
    action: Action
    label: str  # "ok", an error type, or RELEASED
    result: dict[str, Any] | None = None  # SEND
    destination: str | None = None  # SEND
    release_after_s: int = 0  # RELEASE
    detail: str = ""  # RELEASE: why, for the log

    @property
    def failed(self) -> bool:
        return self.label not in ("ok", RELEASED)


@dataclass(frozen=True)
class Answering:
    """What every result needs to know of the worker."""

    model: str
    result_queue: str | None
    visibility_s: int


def backoff_s(receive_count: int, visibility_s: int) -> int:
    """2, 4, 8, ... seconds by receive count, at most one visibility timeout."""
    return min(visibility_s, 2 ** min(receive_count, 10))


def _send(
    job: Job, result: dict[str, Any], label: str, reply_to: str | None, ctx: Answering
) -> Outcome:
    destination = reply_to or ctx.result_queue
    if destination is None:
        return defer(job, NO_DESTINATION, "no reply_to and no WORKER_RESULT_QUEUE_URL", ctx)
    return Outcome(job, Action.SEND, label, result=result, destination=destination)


def answer(
    job: Job, outputs: Outputs, ctx: Answering, *, now: float, inference_s: float
) -> Outcome:
    request = job.request
    timings = Timings(job.queue_wait_s, now - job.received_mono, inference_s)
    result = build_result(
        message_id=job.message.message_id,
        request_id=request.id,
        model=ctx.model,
        outputs=outputs,
        timings=timings,
    )
    return _send(job, result, "ok", request.reply_to, ctx)


def reject(
    job: Job,
    error_type: str,
    message: str,
    ctx: Answering,
    *,
    now: float,
    request_id: str | None,
    reply_to: str | None,
    inference_s: float = 0.0,
) -> Outcome:
    """A final error: an error result, then the request is deleted."""
    result = build_result(
        message_id=job.message.message_id,
        request_id=request_id,
        model=ctx.model,
        error=(error_type, message),
        timings=Timings(job.queue_wait_s, now - job.received_mono, inference_s),
    )
    return _send(job, result, error_type, reply_to, ctx)


def reject_request(
    job: Job, error_type: str, message: str, ctx: Answering, *, now: float, inference_s: float = 0.0
) -> Outcome:
    """A final error for a job whose request parsed (its id and reply_to are known)."""
    return reject(
        job, error_type, message, ctx, now=now, inference_s=inference_s,
        request_id=job.request.id, reply_to=job.request.reply_to,
    )


def defer(job: Job, error_type: str, detail: str, ctx: Answering) -> Outcome:
    """Left for redelivery after a back-off; it keeps its receive count, so the redrive policy
    still counts this attempt."""
    return Outcome(
        job,
        Action.RELEASE,
        error_type,
        release_after_s=backoff_s(job.message.receive_count, ctx.visibility_s),
        detail=detail,
    )


def release(job: Job) -> Outcome:
    """Back to the queue at once, for another replica (drain, circuit breaker)."""
    return Outcome(job, Action.RELEASE, RELEASED)


def from_model(
    jobs: Sequence[Job],
    outputs: Sequence[Outputs | ModelFailure],
    ctx: Answering,
    *,
    now: float,
    inference_s: float,
) -> list[Outcome]:
    """One outcome per job of a batch: its output, a final error (it does not fit in device
    memory even alone), or a release for another try after a back-off (after a device error
    too: released at once, it would come straight back to this worker's own receivers before
    its circuit breaker trips, each time costing a receive count)."""
    out = []
    for job, output in zip(jobs, outputs, strict=True):
        if not isinstance(output, ModelFailure):
            out.append(answer(job, output, ctx, now=now, inference_s=inference_s))
        elif output.final:
            out.append(
                reject_request(
                    job, output.type, output.message, ctx, now=now, inference_s=inference_s
                )
            )
        else:
            out.append(defer(job, output.type, output.message, ctx))
    return out
