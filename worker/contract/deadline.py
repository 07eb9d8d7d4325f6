"""When a request stops being worth running: its deadline, from what it says and when it reached
SQS. Pure: the times are passed in.

    ttl_s      counted from the message's SentTimestamp (when the producer's send reached SQS;
               the receive time when a server does not return it)
    deadline   epoch seconds
    neither    WORKER_DEFAULT_TTL_S from SentTimestamp, when set; else no deadline

With both, the earlier applies. Wall-clock times (epoch seconds): SentTimestamp and `deadline`
come from other machines' clocks, so a skew between them and the worker's shifts the cut-off by
that much; NTP keeps it to milliseconds.
"""

from __future__ import annotations


def request_deadline(
    *,
    ttl_s: float | None,
    deadline: float | None,
    sent_timestamp_ms: int | None,
    received_wall: float,
    default_ttl_s: float | None,
) -> float | None:
    """The epoch second past which the request gets DeadlineExceeded; None: it never expires."""
    sent = sent_timestamp_ms / 1000.0 if sent_timestamp_ms else received_wall
    ttl = ttl_s if ttl_s is not None else (default_ttl_s if deadline is None else None)
    candidates = [d for d in (deadline, sent + ttl if ttl is not None else None) if d is not None]
    return min(candidates) if candidates else None


def expired(deadline: float | None, now_wall: float) -> bool:
    return deadline is not None and now_wall >= deadline


def deadline_message(deadline: float, now_wall: float, stage: str) -> str:
    """The error message: how late, and where it was caught."""
    return (
        f"the request's deadline passed {now_wall - deadline:.3f} s before it could run "
        f"(checked {stage}); it was not run"
    )
