"""The batch feeder: owns the pending requests (a `worker.batching.Batcher`), forms a batch when
the model can take the next one, pads it (`prepare`) and hands it to the executor.

One batch is prepared ahead of the one running (the slot), just in time: once three quarters of
the time the executor expects the running batch to take have passed, less twice the time padding
takes and two GIL switch intervals. The device so never waits for padding, and the batch collects
whatever arrived while the model ran, and sorts better: formed at once, the second and third
batches after a start were cut from the first receives, with more padding than any after them.
When the running batch ends early, the executor asks (`want`), and the next is formed at once.
The hand-off is the back-pressure point between the CPU stages and the device.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.batching import Batcher, BatchLimits
from worker.pipeline.ledger import Job, JobState
from worker.pipeline.outcomes import Answering, defer
from worker.pipeline.writer import ResultWriter
from worker.seams import ModelSeam

Prepared = tuple[list[Job], Any]

# The next batch is due when this share of the running one's expected time has passed: an
# estimate too long would keep the device waiting for padding, one too short only forms early.
EARLY = 0.75


class BatchFeeder:
    def __init__(
        self,
        runner: ModelSeam[Any, Any],
        limits: BatchLimits,
        writer: ResultWriter,
        answering: Answering,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runner = runner
        self._writer = writer
        self._answering = answering
        self._clock = clock
        self._cond = threading.Condition()
        self._batcher: Batcher[Job] = Batcher(limits)
        self._stopping = False
        self._slot = threading.Semaphore(1)
        # when the executor wants the next batch: None = now, inf = when it asks (under _cond)
        self._wanted_at: float | None = None
        self._prepare_s = 0.0  # how long forming and padding a batch took, smoothed
        self.handoff: queue.Queue[Prepared | None] = queue.Queue(maxsize=1)
        self.thread: threading.Thread | None = None

    def start(self, spawn: Callable[[str, Callable[[], None]], threading.Thread]) -> None:
        self.thread = spawn("feeder", self._loop)

    def add(self, jobs: list[Job]) -> None:
        """Encoded jobs join the pending requests (one wake-up per receive, not per message)."""
        now = self._clock()
        with self._cond:
            for job in jobs:
                self._batcher.add(
                    job,
                    group=job.request.task,
                    rows=job.encoded.rows,
                    length=job.encoded.length,
                    now=now,
                )
            self._cond.notify()

    def taken(self, busy_s: float | None = 0.0) -> None:
        """The executor took the prepared batch: the next one may be prepared, to be ready in
        `busy_s` (how long the executor expects this one to keep the device; 0: at once). None:
        no estimate yet (the first batch), so the next is formed when the executor asks: formed
        at once, it would be cut from the first receives' few messages, with several times the
        padding of any batch after it, for a device wait of one `prepare`, once."""
        with self._cond:
            self._wanted_at = (
                math.inf if busy_s is None else self._clock() + EARLY * busy_s
            )
            self._cond.notify()
        self._slot.release()

    def want(self) -> None:
        """The executor is free: the next batch is wanted now."""
        with self._cond:
            self._wanted_at = None
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while not self._stopping:
            if not self._slot.acquire(timeout=0.5):
                continue
            jobs = self._next_batch()
            if not jobs:
                self._slot.release()
                break
            began = self._clock()
            try:
                prepared = self._runner.prepare(
                    [(job.encoded, job.request.parameters) for job in jobs]
                )
                self._prepare_s = 0.8 * self._prepare_s + 0.2 * (self._clock() - began)
            except Exception as exc:
                detail = f"prepare: {type(exc).__name__}: {exc}"
                self._writer.accept(
                    [defer(job, "ModelError", detail, self._answering) for job in jobs],
                    JobState.RECEIVED,
                )
                self._slot.release()
                continue
            self._hand_over((jobs, prepared))
        self._hand_over(None)

    def _hand_over(self, item: Prepared | None) -> None:
        """Into the one-slot hand-off, unless the drain stopped the executor meanwhile (a batch
        it will never take stays RECEIVED: the drain releases it)."""
        while True:
            try:
                self.handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stopping:
                    return

    def _next_batch(self) -> list[Job] | None:
        """Wait until the executor will want a batch soon, then for one to be due (full, or its
        oldest request waited max_wait)."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                form_at = self._form_at()
                if form_at > now:
                    self._cond.wait(None if form_at == math.inf else form_at - now)
                    continue
                jobs = self._batcher.take(now)
                if jobs:
                    return jobs
                due = self._batcher.next_due(now)
                self._cond.wait(0.5 if due is None else max(due, 0.0005))
            return None

    def _form_at(self) -> float:
        """When to form the next batch: a lead before the executor wants it, of padding twice
        over and two GIL switch intervals (a waking thread may wait that long for the GIL while
        the encoders and writers hold it)."""
        if self._wanted_at is None:
            return float("-inf")
        return self._wanted_at - 2 * (self._prepare_s + sys.getswitchinterval())
