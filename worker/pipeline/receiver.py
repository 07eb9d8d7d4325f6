"""Receivers: concurrent long polls that fill the ledger, each reserving room before it polls
(back-pressure: the worker never holds more than the capacity estimator allows), then handing
each receive's messages to the encoders as one list. With several input queues, `PollOrder`
(worker.pipeline.polling) says which queue each receive reads.

Receivers grow: each receive that comes back full (the queue holds more) times its round trip,
and while the fastest of the last such times (delays, retries and waits for the GIL only add to
a round trip) says the receivers bring less than four times the rate the worker could go at
(`CapacityEstimator.receivers_wanted`), another is started, up to `max_count`
(`WORKER_MAX_RECEIVERS`). With a cross-cloud round trip they grow to what the rate needs; where
SQS answers in a millisecond they stay at the configured count. An added receiver ends at its
first failed receive, so an outage is polled by the configured count alone (each pausing a
second between tries); the ledger's bound, not their number, caps what the worker holds."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
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
        max_count: int | None = None,
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
        self._max_count = max(count, max_count or count)
        self._draining = threading.Event()
        self._spawn: Callable[[str, Callable[[], None]], threading.Thread] | None = None
        # the thread list and the round trips of full receives: every receiver adds to both
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = 0  # receivers started so far: each one's number
        self._round_trips: deque[float] = deque(maxlen=16)

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def alive(self) -> bool:
        """Every receiver still runs (an added one that ended on a failure has left the list)."""
        with self._lock:
            return all(t.is_alive() for t in self._threads)

    def start(self, spawn: Callable[[str, Callable[[], None]], threading.Thread]) -> None:
        self._spawn = spawn
        for _ in range(self._count):
            self._add_receiver()

    def drain(self) -> None:
        """Hand nothing more to the encoders: what the last polls bring stays in the ledger for
        the drain to release. (The ledger, closed, stops them polling again.) No receiver is
        added after this returns, so `threads` is then the list to join."""
        with self._lock:
            self._draining.set()

    def _add_receiver(self) -> None:
        with self._lock:
            count, number = len(self._threads), self._started
            if self._spawn is None or self._draining.is_set() or count >= self._max_count:
                return
            self._started += 1
            loop = functools.partial(self._loop, number, added=count >= self._count)
            self._threads.append(self._spawn(f"receiver-{number}", loop))
        if count >= self._count:
            event(log, "receiver added: full receives bring less than the worker could take",
                  logging.INFO, receivers=count + 1)

    def _timed_full_receive(self, seconds: float) -> None:
        """A receive came back full in `seconds`: add a receiver if the round trip asks for it."""
        with self._lock:
            self._round_trips.append(seconds)
            round_trip = min(self._round_trips)
            count = len(self._threads)
        if count >= self._max_count:
            return
        wanted = self._capacity.receivers_wanted(
            round_trip, RECEIVE_MAX_MESSAGES, self._ledger.held
        )
        if wanted is not None and wanted > count:
            self._add_receiver()

    def _loop(self, index: int = 0, added: bool = False) -> None:
        while (n := self._ledger.reserve(self._capacity.bound, RECEIVE_MAX_MESSAGES)) > 0:
            try:
                messages = self._receive(n, index)
            except Exception as exc:
                self._ledger.cancel(n)
                self._failed(exc)
                if added:
                    self._retire(threading.current_thread())
                    return
                self._draining.wait(1.0)
                continue
            jobs = self._ledger.admit(messages, n, self._visibility_s)
            if jobs:
                self._observer.received(jobs)
                if not self._draining.is_set():
                    self._handoff(jobs)

    def _retire(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.remove(thread)
            self._round_trips.clear()  # the next growth waits for full receives after this
            count = len(self._threads)
        event(log, "added receiver ended: a receive failed", logging.INFO, receivers=count)

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
        began = time.monotonic()
        messages = self._sqs.receive(
            queue_url, max_messages=n, wait_s=wait_s, visibility_timeout_s=self._visibility_s
        )
        if len(messages) == RECEIVE_MAX_MESSAGES:  # it did not wait: its time is a round trip
            self._timed_full_receive(time.monotonic() - began)
        return messages

    def _failed(self, exc: BaseException) -> None:
        text = f"{error_code(exc)}: {exc}"[:500]
        event(log, "receive failed", logging.WARNING, error=text)
        self._observer.receive_failed(text)
