"""The batch feeder: owns the pending requests (a `worker.batching.Batcher`), forms a batch when
the model can take the next one, pads it (`prepare`) and hands it to the executor.

One batch is prepared ahead of the one running (the slot): the device never waits for padding,
and a batch formed only when the model can take it next collects whatever arrived meanwhile, and
sorts better. The hand-off is the back-pressure point between the CPU stages and the device.
"""

from __future__ import annotations

import queue
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

    def taken(self) -> None:
        """The executor took the prepared batch: the next one may be prepared."""
        self._slot.release()

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
            try:
                prepared = self._runner.prepare(
                    [(job.encoded, job.request.parameters) for job in jobs]
                )
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
        """Wait for a batch to be due (full, or its oldest request waited max_wait)."""
        with self._cond:
            while not self._stopping:
                jobs = self._batcher.take(self._clock())
                if jobs:
                    return jobs
                due = self._batcher.next_due(self._clock())
                self._cond.wait(0.5 if due is None else max(due, 0.0005))
            return None
