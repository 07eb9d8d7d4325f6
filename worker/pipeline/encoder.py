"""Encoders: parse, validate and encode each received message, on a few threads (a fast
tokenizer's encode releases the GIL). A bad request becomes an error result here and never
reaches the model; a good one goes to the batch feeder with its encoding."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.contract.request import BadRequest, Request
from worker.errors import RequestDeferred, RequestRejected
from worker.pipeline.feeder import BatchFeeder
from worker.pipeline.ledger import Job, JobState
from worker.pipeline.outcomes import (
    NO_DESTINATION,
    Answering,
    Outcome,
    defer,
    reject,
    reject_request,
)
from worker.pipeline.writer import ResultWriter
from worker.seams import ModelSeam


class Encoders:
    def __init__(
        self,
        runner: ModelSeam[Any, Any],
        parse: Callable[[str], Request | BadRequest],
        feeder: BatchFeeder,
        writer: ResultWriter,
        answering: Answering,
        *,
        count: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runner = runner
        self._parse = parse
        self._feeder = feeder
        self._writer = writer
        self._answering = answering
        self._clock = clock
        self._count = count
        self._inbox: queue.Queue[list[Job] | None] = queue.Queue()
        self.threads: list[threading.Thread] = []

    def start(self, spawn: Callable[[str, Callable[[], None]], threading.Thread]) -> None:
        self.threads = [spawn(f"encoder-{i}", self._loop) for i in range(self._count)]

    def submit(self, jobs: list[Job]) -> None:
        self._inbox.put(jobs)

    def stop(self) -> None:
        for _ in self.threads:
            self._inbox.put(None)

    def _loop(self) -> None:
        while (jobs := self._inbox.get()) is not None:
            now = self._clock()
            ready: list[Job] = []
            finished: list[Outcome] = []
            for job in jobs:
                outcome = self._encode(job, now)
                if outcome is None:
                    ready.append(job)
                else:
                    finished.append(outcome)
            self._writer.accept(finished, JobState.RECEIVED)
            if ready:
                self._feeder.add(ready)

    def _encode(self, job: Job, now: float) -> Outcome | None:
        """None when the job is ready for a batch, else its outcome."""
        parsed = self._parse(job.message.body)
        ctx = self._answering
        if isinstance(parsed, BadRequest):
            return reject(
                job, parsed.type, parsed.message, ctx, now=now,
                request_id=parsed.request_id, reply_to=parsed.reply_to,
            )
        job.request = parsed
        if parsed.reply_to is None and ctx.result_queue is None:
            # nowhere to answer: never run the model for it; it ends in the DLQ
            return defer(job, NO_DESTINATION, "no reply_to and no WORKER_RESULT_QUEUE_URL", ctx)
        try:
            job.encoded = self._runner.encode(parsed.inputs, parsed.parameters)
        except RequestRejected as exc:
            return reject_request(job, exc.error_type, str(exc), ctx, now=now)
        except RequestDeferred as exc:
            return defer(job, exc.error_type, str(exc), ctx)
        except ValueError as exc:  # a model adapter's plain word for bad parameters
            return reject_request(job, "InvalidParameters", str(exc), ctx, now=now)
        except Exception as exc:
            return defer(job, "EncodeError", f"{type(exc).__name__}: {exc}", ctx)
        return None
