"""Encoders: parse, validate and encode each received message, on a few threads (a fast
tokenizer's encode releases the GIL). A bad request becomes an error result here and never
reaches the model; a good one goes to the batch feeder with its encoding."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.contract.deadline import deadline_message, expired, request_deadline
from worker.contract.request import BadRequest, Request
from worker.errors import RequestDeferred, RequestRejected
from worker.pipeline.feeder import BatchFeeder
from worker.pipeline.ledger import Job, JobState
from worker.pipeline.observer import NullObserver, Observer
from worker.pipeline.outcomes import (
    DEADLINE_EXCEEDED,
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
        observer: Observer | None = None,
        default_ttl_s: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._runner = runner
        self._observer = observer or NullObserver()
        self._default_ttl_s = default_ttl_s
        self._wall = wall
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
            finished: list[Outcome] = []
            parsed: list[Job] = []
            for job in jobs:
                outcome = self._parse_one(job, now)
                if outcome is None:
                    parsed.append(job)
                else:
                    finished.append(outcome)
            parsed = self._unexpired(parsed, finished, now)
            ready = []
            for job, encoded in zip(parsed, self._encode_all(parsed), strict=True):
                if isinstance(encoded, BaseException):
                    finished.append(self._refused(job, encoded, now))
                else:
                    job.encoded = encoded
                    ready.append(job)
            self._writer.accept(finished, JobState.RECEIVED)
            if ready:
                self._feeder.add(ready)

    def _parse_one(self, job: Job, now: float) -> Outcome | None:
        """None when the request is valid and has somewhere to go, else its outcome."""
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
        return None

    def _unexpired(self, jobs: list[Job], finished: list[Outcome], now: float) -> list[Job]:
        """The first deadline check: a request already past its deadline is answered
        DeadlineExceeded and never encoded (nor run)."""
        wall = self._wall()
        live = []
        late = 0
        for job in jobs:
            request = job.request
            job.deadline = request_deadline(
                ttl_s=request.ttl_s,
                deadline=request.deadline,
                sent_timestamp_ms=job.message.sent_timestamp_ms,
                received_wall=job.received_wall,
                default_ttl_s=self._default_ttl_s,
            )
            if job.deadline is not None and expired(job.deadline, wall):
                message = deadline_message(job.deadline, wall, "when parsed")
                finished.append(
                    reject_request(job, DEADLINE_EXCEEDED, message, self._answering, now=now)
                )
                late += 1
            else:
                live.append(job)
        if late:
            self._observer.expired("parse", late)
        return live

    def _encode_all(self, jobs: list[Job]) -> list[Any]:
        """One encoding (or the exception refusing it) per job; one model call when it can."""
        if not jobs:
            return []
        requests = [(job.request.inputs, job.request.parameters) for job in jobs]
        encode_many = getattr(self._runner, "encode_many", None)
        if encode_many is not None:
            try:
                return list(encode_many(requests))
            except Exception:
                pass  # one at a time below: an input the tokenizer refuses fails its request alone
        out: list[Any] = []
        for inputs, parameters in requests:
            try:
                out.append(self._runner.encode(inputs, parameters))
            except Exception as exc:
                out.append(exc)
        return out

    def _refused(self, job: Job, exc: BaseException, now: float) -> Outcome:
        ctx = self._answering
        if isinstance(exc, RequestRejected):
            return reject_request(job, exc.error_type, str(exc), ctx, now=now)
        if isinstance(exc, RequestDeferred):
            return defer(job, exc.error_type, str(exc), ctx)
        if isinstance(exc, ValueError):  # a model adapter's plain word for bad parameters
            return reject_request(job, "InvalidParameters", str(exc), ctx, now=now)
        return defer(job, "EncodeError", f"{type(exc).__name__}: {exc}", ctx)
