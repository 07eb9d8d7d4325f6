"""The outbox: outcomes waiting for a result writer, grouped by where they go.

A writer takes a full group (10: one SendMessageBatch) at once, or a smaller one when its oldest
outcome has waited `linger_s` (20 ms by default): calls stay full under load, and nothing waits
longer than the linger when the worker is idle. (Before, the model thread held a batch's
leftover results back to fill the next batch's calls: with a 20 s generate batch behind it, 20 s
of added latency.) Closing it is the last step of a drain: writers empty it, then stop.

It counts the writers waiting in `take()`: `unserved()` (full groups beyond the writers free to
take them) is how the result writer knows its threads, not the model, are the bottleneck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence

from worker import sqs_limits
from worker.pipeline.outcomes import Action, Outcome


class Outbox:
    """Outcomes waiting for a writer, grouped by (action, destination), with a linger."""

    def __init__(
        self,
        linger_s: float,
        clock: Callable[[], float] = time.monotonic,
        group_size: int = sqs_limits.BATCH_MAX_ENTRIES,
    ) -> None:
        self._linger_s = linger_s
        self._clock = clock
        self._size = group_size
        self._cond = threading.Condition()
        self._groups: dict[Hashable, list[Outcome]] = {}
        self._since: dict[Hashable, float] = {}
        self._closed = False
        self._idle = 0  # writers waiting in take()

    @staticmethod
    def key(outcome: Outcome) -> Hashable:
        if outcome.action is Action.SEND:
            return (Action.SEND, outcome.destination)
        return (Action.RELEASE, outcome.job.message.queue_url)

    def put(self, outcomes: Sequence[Outcome]) -> bool:
        """False once closed: the drain began, and the writers write what is queued, then stop
        (an outcome offered now is the caller's to carry out or to leave for redelivery)."""
        with self._cond:
            if self._closed:
                return False
            now = self._clock()
            for outcome in outcomes:
                key = self.key(outcome)
                self._groups.setdefault(key, []).append(outcome)
                self._since.setdefault(key, now)
            self._cond.notify()
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self) -> list[Outcome] | None:
        """The next group to write; None once closed and empty."""
        with self._cond:
            while True:
                now = self._clock()
                key, wait = self._ready(now)
                if key is not None:
                    taken = self._pop(key)
                    if self._ready(now)[0] is not None:
                        self._cond.notify()  # put() woke one writer: pass the rest on
                    return taken
                if self._closed:
                    return None
                self._idle += 1
                try:
                    self._cond.wait(wait)
                finally:
                    self._idle -= 1

    @property
    def waiting(self) -> int:
        """Writers waiting in take()."""
        with self._cond:
            return self._idle

    def unserved(self) -> int:
        """Full groups waiting beyond the writers waiting for them (0 once closed)."""
        with self._cond:
            if self._closed:
                return 0
            full = sum(len(items) // self._size for items in self._groups.values())
            return max(0, full - self._idle)

    def _ready(self, now: float) -> tuple[Hashable | None, float | None]:
        oldest: Hashable | None = None
        for key, items in self._groups.items():
            if len(items) >= self._size:
                return key, None
            if oldest is None or self._since[key] < self._since[oldest]:
                oldest = key
        if oldest is None:
            return None, None
        waited = now - self._since[oldest]
        if self._closed or waited >= self._linger_s:
            return oldest, None
        return None, self._linger_s - waited

    def _pop(self, key: Hashable) -> list[Outcome]:
        items = self._groups[key]
        taken, rest = items[: self._size], items[self._size :]
        if rest:
            self._groups[key] = rest
        else:
            del self._groups[key], self._since[key]
        return taken
