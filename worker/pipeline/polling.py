"""Which input queue a receive reads: strict priority, or weighted. Pure (no I/O, no clock); one
`PollOrder` is shared by the receivers and owns the weighted round-robin's state.

Strict priority (WORKER_QUEUE_URLS alone): every receive sweeps the queues from the top with
short polls (WaitTimeSeconds 0) and keeps the first that returns messages, so a queue is read
only when every queue above it returned nothing on this receiver's last poll of it. Priority
decides at admission, where it matters: while the worker is saturated, each freed place goes to
the highest queue that has work, and a lower queue starves for as long as the queues above it
keep the worker busy.

Weighted (WORKER_QUEUE_WEIGHTS): each sweep starts at a queue picked by smooth weighted
round-robin (nginx's: deterministic, spreads picks evenly) and goes on down in priority order
when that one is empty, so a queue with a backlog gets at least its weight's share of receives
and no queue with a weight starves.

When a whole sweep finds nothing (the worker is idle), the receiver long-polls one queue,
receiver i the queue i mod n, so with at least as many receivers as queues every queue has a
long poll waiting and nothing idles behind a 20 s wait on another queue.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence


class PollOrder:
    def __init__(self, queue_urls: Sequence[str], weights: Sequence[int] | None = None) -> None:
        if not queue_urls:
            raise ValueError("at least one queue")
        if weights is not None and (
            len(weights) != len(queue_urls) or any(w < 1 for w in weights)
        ):
            raise ValueError("one positive weight per queue")
        self.queue_urls = tuple(queue_urls)
        self.weights = tuple(weights) if weights is not None else None
        self._current = [0] * len(queue_urls)
        self._lock = threading.Lock()

    @property
    def single(self) -> bool:
        return len(self.queue_urls) == 1

    def sweep(self) -> list[str]:
        """The queues to try, in order, for one receive."""
        if self.weights is None:
            return list(self.queue_urls)
        first = self._pick()
        return [self.queue_urls[first], *(q for i, q in enumerate(self.queue_urls) if i != first)]

    def idle_queue(self, receiver: int) -> str:
        """The queue receiver number `receiver` long-polls when a whole sweep found nothing."""
        return self.queue_urls[receiver % len(self.queue_urls)]

    def _pick(self) -> int:
        assert self.weights is not None
        with self._lock:
            for i, weight in enumerate(self.weights):
                self._current[i] += weight
            best = max(range(len(self._current)), key=lambda i: (self._current[i], -i))
            self._current[best] -= sum(self.weights)
            return best
