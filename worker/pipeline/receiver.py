"""Receivers: concurrent long polls that fill the ledger, each reserving room before it polls
(back-pressure: the worker never holds more than the capacity estimator allows), then handing
each receive's messages to the encoders as one list. With several input queues, `PollOrder`
(worker.pipeline.polling) says which queue each receive reads."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

from worker.errors import error_code
from worker.logs import event
from worker.pipeline.capacity import CapacityEstimator
from worker.pipeline.ledger import Job, Ledger
from worker.pipeline.observer import Observer
from worker.pipeline.polling import PollOrder
from worker.seams import QueueSeam, ReceivedMessage
from worker.sqs_limits import RECEIVE_MAX_MESSAGES

log = logging.getLogger("worker.pipeline")


class Receivers:
    def __init__(
        self,
        sqs: QueueSeam,
        ledger: Ledger,
        capacity: CapacityEstimator,
        observer: Observer,
        handoff: Callable[[list[Job]], None],
        *,
        queue_url: str | Sequence[str],
        wait_s: int,
        visibility_s: int,
        count: int,
        weights: Sequence[int] | None = None,
    ) -> None:
        self._sqs = sqs
        self._ledger = ledger
        self._capacity = capacity
        self._observer = observer
        self._handoff = handoff
        self._order = PollOrder([queue_url] if isinstance(queue_url, str) else queue_url, weights)
        self._wait_s = wait_s
        self._visibility_s = visibility_s
        self._count = count
        self._draining = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, spawn: Callable[[str, Callable[[], None]], threading.Thread]) -> None:
        self.threads = [
            spawn(f"receiver-{i}", functools.partial(self._loop, i)) for i in range(self._count)
        ]

    def drain(self) -> None:
        """Hand nothing more to the encoders: what the last polls bring stays in the ledger for
        the drain to release. (The ledger, closed, stops them polling again.)"""
        self._draining.set()

    def _loop(self, index: int = 0) -> None:
        while (n := self._ledger.reserve(self._capacity.bound, RECEIVE_MAX_MESSAGES)) > 0:
            try:
                messages = self._receive(n, index)
            except Exception as exc:
                self._ledger.cancel(n)
                self._failed(exc)
                self._draining.wait(1.0)
                continue
            jobs = self._ledger.admit(messages, n, self._visibility_s)
            if jobs:
                self._observer.received(jobs)
                if not self._draining.is_set():
                    self._handoff(jobs)

    def _receive(self, n: int, index: int) -> list[ReceivedMessage]:
        """One queue's messages: a long poll of the one queue, or a sweep of short polls in the
        order's sequence and, when all were empty, a long poll of this receiver's idle queue.
        A queue that fails in a sweep is reported and skipped (the others still get read)."""
        order = self._order
        if order.single:
            return self._poll(order.queue_urls[0], n, self._wait_s)
        for queue_url in order.sweep():
            try:
                messages = self._poll(queue_url, n, 0)
            except Exception as exc:
                self._failed(exc)
                continue
            if messages:
                return messages
        return self._poll(order.idle_queue(index), n, self._wait_s)

    def _poll(self, queue_url: str, n: int, wait_s: int) -> list[ReceivedMessage]:
        return self._sqs.receive(
            queue_url, max_messages=n, wait_s=wait_s, visibility_timeout_s=self._visibility_s
        )

    def _failed(self, exc: BaseException) -> None:
        text = f"{error_code(exc)}: {exc}"[:500]
        event(log, "receive failed", logging.WARNING, error=text)
        self._observer.receive_failed(text)
