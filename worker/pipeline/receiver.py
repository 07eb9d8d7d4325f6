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
from worker.pipeline.threads import GrowingThreads, Spawn
from worker.seams import QueueSeam, ReceivedMessage
from worker.sqs_limits import RECEIVE_MAX_MESSAGES

#: receives failing this long with none succeeding make the worker not ready (/readyz)
UNREADY_AFTER_S = 30.0

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
        self._unready_after_s = UNREADY_AFTER_S
        self._ledger = ledger
        self._capacity = capacity
        self._observer = observer
        self._handoff = handoff
        self._order = PollOrder([queue_url] if isinstance(queue_url, str) else queue_url, weights)
        self._wait_s = wait_s
        self._visibility_s = visibility_s
        self._draining = threading.Event()
        self._threads = GrowingThreads(
            "receiver", configured=count, most=max_count,
            added="receiver added: full receives bring less than the worker could take",
        )
        # the round trips of full receives: every receiver adds to them
        self._lock = threading.Lock()
        self._round_trips: deque[float] = deque(maxlen=16)
        self._failing_since: float | None = None  # the first failure since the last success

    @property
    def threads(self) -> list[threading.Thread]:
        return self._threads.threads

    def alive(self) -> bool:
        """Every receiver still runs (an added one that ended on a failure has left the list)."""
        return self._threads.alive()

    def receiving(self) -> bool:
        """No receive has failed for `unready_after_s` without one succeeding since: a pod that
        may not receive (sqs:ReceiveMessage denied, the queue gone) is not ready, so a rollout
        stops at it instead of draining the old pods; a blip of a few seconds is not that."""
        with self._lock:
            since = self._failing_since
        return since is None or time.monotonic() - since < self._unready_after_s

    def start(self, spawn: Spawn) -> None:
        self._threads.start(
            spawn, lambda number, added: functools.partial(self._loop, number, added=added)
        )

    def drain(self) -> None:
        """Hand nothing more to the encoders: what the last polls bring stays in the ledger for
        the drain to release. (The ledger, closed, stops them polling again.) No receiver is
        added after this returns, so `threads` is then the list to join."""
        self._threads.close()
        self._draining.set()

    def _timed_full_receive(self, seconds: float) -> None:
        """A receive came back full in `seconds`: add a receiver if the round trip asks for it."""
        with self._lock:
            self._round_trips.append(seconds)
            round_trip = min(self._round_trips)
        if self._threads.full():
            return
        wanted = self._capacity.receivers_wanted(round_trip, RECEIVE_MAX_MESSAGES)
        if wanted is not None and wanted > self._threads.count():
            self._threads.add()

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
            with self._lock:
                self._failing_since = None
            jobs = self._ledger.admit(messages, n, self._visibility_s)
            if jobs:
                self._observer.received(jobs)
                if not self._draining.is_set():
                    self._handoff(jobs)

    def _retire(self, thread: threading.Thread) -> None:
        count = self._threads.leave(thread)
        with self._lock:
            self._round_trips.clear()  # the next growth waits for full receives after this
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
            try:
                self._timed_full_receive(time.monotonic() - began)
            except Exception as exc:  # e.g. "can't start new thread" under a pids limit
                # SQS has handed these over: they must reach the ledger whatever growth does
                event(log, "receiver not added", logging.WARNING,
                      error=f"{type(exc).__name__}: {exc}"[:300])
        return messages

    def _failed(self, exc: BaseException) -> None:
        text = f"{error_code(exc)}: {exc}"[:500]
        event(log, "receive failed", logging.WARNING, error=text)
        self._observer.receive_failed(text)
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
