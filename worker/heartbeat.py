"""Visibility heartbeat scheduling. Pure: times are passed in.

A message held past half its visibility timeout gets its timeout extended
(ChangeMessageVisibilityBatch), so a long wait in the buffer or a slow batch does not make SQS hand
it to another worker. SQS caps the total invisibility at 12 hours from receive, so extensions stop
short of that: a message still held then becomes visible again and is redelivered, which is the
right outcome for something stuck that long.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from worker.sqs_limits import MAX_HOLD_S

# stay clear of the 12 h edge: clocks drift, and the change call itself takes time
HOLD_CAP_MARGIN_S = 60.0


@dataclass(frozen=True)
class Held:
    """What the heartbeat needs to know about one message the worker holds."""

    key: int
    received_at: float  # monotonic clock at receive
    visible_at: float  # monotonic clock at which SQS makes it visible again


@dataclass(frozen=True)
class Extension:
    key: int
    timeout_s: int  # the VisibilityTimeout to set, counted from now
    visible_at: float  # the resulting deadline


def plan_heartbeats(
    held: Iterable[Held], now: float, visibility_timeout_s: int, max_hold_s: float = MAX_HOLD_S
) -> list[Extension]:
    """The extensions due at `now`: messages with less than half a timeout left get a fresh
    `visibility_timeout_s`, capped so that receive + hold never passes `max_hold_s - margin`."""
    due: list[Extension] = []
    half = visibility_timeout_s / 2.0
    for item in held:
        if item.visible_at - now > half:
            continue
        limit = item.received_at + max_hold_s - HOLD_CAP_MARGIN_S
        timeout = min(float(visibility_timeout_s), limit - now)
        timeout_s = int(timeout)
        # an extension shorter than what is left already would shorten it: skip it
        if timeout_s <= 0 or now + timeout_s <= item.visible_at:
            continue
        due.append(Extension(item.key, timeout_s, now + timeout_s))
    return due


def next_heartbeat_check(visibility_timeout_s: int) -> float:
    """How often to look: a sixth of the timeout, so a message is seen at least twice between its
    half-way mark and its expiry (one late look still leaves time for the call), but at most four
    times a second and at least every 30 s."""
    return min(30.0, max(0.25, visibility_timeout_s / 6.0))
