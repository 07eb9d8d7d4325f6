"""Receivers: concurrent long polls that fill the ledger, each reserving room before it polls
(back-pressure: the worker never holds more than the capacity estimator allows), then handing
each receive's messages to the encoders as one list."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.errors import error_code
from worker.logs import event
from worker.pipeline.capacity import CapacityEstimator
from worker.pipeline.ledger import Job, Ledger
from worker.pipeline.observer import Observer
from worker.seams import QueueSeam
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
        queue_url: str,
        wait_s: int,
        visibility_s: int,
        count: int,
    ) -> None:
        self._sqs = sqs
        self._ledger = ledger
        self._capacity = capacity
        self._observer = observer
        self._handoff = handoff
        self._queue_url = queue_url
        self._wait_s = wait_s
        self._visibility_s = visibility_s
        self._count = count
        self._draining = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, spawn: Callable[[str, Callable[[], None]], threading.Thread]) -> None:
        self.threads = [spawn(f"receiver-{i}", self._loop) for i in range(self._count)]

    def drain(self) -> None:
        """Hand nothing more to the encoders: what the last polls bring stays in the ledger for
        the drain to release. (The ledger, closed, stops them polling again.)"""
        self._draining.set()

    def _loop(self) -> None:
        while (n := self._ledger.reserve(self._capacity.bound, RECEIVE_MAX_MESSAGES)) > 0:
            try:
                messages = self._sqs.receive(
                    self._queue_url,
                    max_messages=n,
                    wait_s=self._wait_s,
                    visibility_timeout_s=self._visibility_s,
                )
            except Exception as exc:
                self._ledger.cancel(n)
                text = f"{error_code(exc)}: {exc}"[:500]
                event(log, "receive failed", logging.WARNING, error=text)
                self._observer.receive_failed(text)
                self._draining.wait(1.0)
                continue
            jobs = self._ledger.admit(messages, n, self._visibility_s)
            if jobs:
                self._observer.received(jobs)
                if not self._draining.is_set():
                    self._handoff(jobs)
