"""How many messages the worker may hold, how long a batch should keep the model and how many
receivers it takes to keep it fed: the capacity estimator, the owner of the throughput and
departure samples these are computed from (its own lock: the model thread and the writers
record, the receivers and the executor ask).

Holding too few starves the model; holding too many keeps messages past their visibility timeout
(redelivered, processed twice) or hoards a backlog other replicas could take.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable

# The auto bound holds at most this much work, so replicas share a backlog (and a scale-up helps
# at once). The scaler's simulator models the same hold (scaler/simulator.py --hold-s).
MAX_HOLD_WORK_S = 10.0
BOUND_CEILING = 10_000

# Receivers should bring this many times what the model takes: the pending requests then pile up
# while a batch runs, and each batch is sorted from a choice of them. Near 1x every request is
# batched about as it arrived. Measured with 50 ms per SQS call (MiniLM on 2 cores, 600 msgs/s):
# a fixed 4 receivers padded 1.17 tokens per real one; grown at 3x they reached 8-9 and 1.13, at
# 4x 11-12 and 1.10, a fixed 12 1.10 (and 12 against 4 at 1 ms round trips: no difference). The
# rate they are sized by is the lower of the model's and the one messages leave at (see
# `CapacityEstimator.receivers_wanted`).
RECEIVE_HEADROOM = 4.0


def receivers_for(*, throughput_msgs_s: float, round_trip_s: float, per_receive: int) -> int:
    """Receivers needed, pure: each brings `per_receive` messages per round trip."""
    return math.ceil(RECEIVE_HEADROOM * throughput_msgs_s * round_trip_s / per_receive)


def buffer_bound(
    *,
    configured: int,
    throughput_msgs_s: float | None,
    visibility_timeout_s: float,
    max_batch_size: int,
    receivers: int,
    ceiling: int = BOUND_CEILING,
    completion_msgs_s: float | None = None,
) -> int:
    """The bound, pure. `configured` > 0 wins. Otherwise hold what the worker can finish within
    half a visibility timeout (the rest is margin for a slow batch and the result writes), never
    less than the floor that keeps the model fed (two batches plus one receive per receiver) and
    never more than `ceiling`. What it can finish is the model's throughput or, when lower, the
    rate at which held messages actually leave the worker (`completion_msgs_s`): when SQS is slow
    or failing, the writes, not the model, are the bottleneck, and a bound sized by the model
    alone would hold messages past their visibility."""
    if configured > 0:
        return configured
    floor = 2 * max_batch_size + 10 * receivers
    if completion_msgs_s is None:
        # nothing has left yet: how fast results can be written is not known, and a bound
        # from the model alone (10,000 for a fast one) filled up before the first departure
        # when the writes were the bottleneck
        return floor
    if completion_msgs_s > 0:
        throughput_msgs_s = min(throughput_msgs_s or completion_msgs_s, completion_msgs_s)
    if throughput_msgs_s is None or throughput_msgs_s <= 0:
        return floor
    bound = int(throughput_msgs_s * visibility_timeout_s * 0.5)
    return max(floor, min(ceiling, bound))


class CapacityEstimator:
    def __init__(
        self, *, configured: int, visibility_timeout_s: int, max_batch_size: int, receivers: int
    ) -> None:
        self._configured = configured
        # half a timeout of work at most (buffer_bound halves it), and no more than
        # MAX_HOLD_WORK_S of it
        self._horizon_s = min(float(visibility_timeout_s), 2 * MAX_HOLD_WORK_S)
        self._max_batch_size = max_batch_size
        self._receivers = receivers
        self._lock = threading.Lock()
        # (messages, work, model seconds): work in the runner's unit, padded tokens where it
        # reports them
        self._batches: deque[tuple[int, int, float]] = deque(maxlen=32)
        # (seconds from receive to leaving, messages held when it was received, itself included)
        self._departures: deque[tuple[float, int]] = deque(maxlen=256)

    def record_batch(self, messages: int, seconds: float, work: int | None = None) -> None:
        """One batch the model ran; `work` is what it computed (padded tokens, or messages where
        the runner does not say), for `expected_seconds`."""
        with self._lock:
            self._batches.append((messages, work or messages, seconds))

    def record_departures(self, samples: Iterable[tuple[float, int]]) -> None:
        """Messages that left: (seconds held, messages held when each was received)."""
        with self._lock:
            self._departures.extend(samples)

    def throughput(self) -> float | None:
        """Messages per model-second over the last batches; None before the first."""
        with self._lock:
            messages = sum(m for m, _, _ in self._batches)
            seconds = sum(s for _, _, s in self._batches)
        return messages / seconds if seconds > 0 else None

    def expected_seconds(self, messages: int, work: int) -> float | None:
        """How long a batch should keep the model: the lower of two estimates from the last
        batches, per message and per unit of work (a device's time follows the padded tokens
        on a full batch, the batch count on a small one; too low an estimate only forms the
        next batch early). None before the first batch."""
        with self._lock:
            sent = sum(m for m, _, _ in self._batches)
            units = sum(w for _, w, _ in self._batches)
            seconds = sum(s for _, _, s in self._batches)
        if units <= 0 or sent <= 0:
            return None
        return min(messages / sent, work / units) * seconds

    def receivers_wanted(self, round_trip_s: float, per_receive: int) -> int | None:
        """How many receivers keep the model fed when a full receive takes `round_trip_s`, at
        the lower of the model's rate and the rate messages leave the worker: where the
        pipeline's CPU, not the receiving, holds the rate below the model's, more receivers
        would bring no more (with a stub model, 32 of them cost 7% more CPU per message than 4).
        Receivers that are the limit raise the rate they are sized by, so they grow until
        something else is. None before the first batch and departure."""
        model = self.throughput()
        leaving = self.completion_rate()
        if model is None or leaving is None:
            return None
        return receivers_for(
            throughput_msgs_s=min(model, leaving), round_trip_s=round_trip_s,
            per_receive=per_receive,
        )

    def completion_rate(self) -> float | None:
        """Messages leaving the worker per second, by Little's law over the last departures:
        the mean of what was held when each was received over the mean time each was held (a
        message that found h held, itself included, leaves after about h / rate). None before
        the first departure.

        Not the count held *now* over the mean time held: a receive that had just raised the
        count was divided by times held measured before it, so the estimated rate rose with
        what the bound let in (fast model, slow writes: 80 msgs/s leaving, 9,451 estimated,
        4,960 held against a 10 s bound of 800)."""
        with self._lock:
            if not self._departures:
                return None
            seconds = sum(s for s, _ in self._departures)
            held = sum(h for _, h in self._departures)
        return held / seconds if seconds > 0 else None

    def bound(self) -> int:
        return buffer_bound(
            configured=self._configured,
            throughput_msgs_s=self.throughput(),
            completion_msgs_s=self.completion_rate(),
            visibility_timeout_s=self._horizon_s,
            max_batch_size=self._max_batch_size,
            receivers=self._receivers,
        )
