"""The model executor: the only thread that touches the device. It takes the prepared batch,
claims its jobs from the ledger (jobs a drain released meanwhile drop out), runs it, and turns
each output into an outcome for the writers. It feeds the capacity estimator, the observer and
the circuit breaker, and tells the feeder how long it expects each batch to keep the device and
when it is free (the feeder forms the next batch just in time).

Just before a batch runs, its jobs' deadlines are checked again (the first check is the
encoders'): a job past its deadline is answered DeadlineExceeded, and the rest of the batch is
prepared again without it, so the model never sees it (padding one batch again costs
milliseconds of CPU; running an expired request costs the device's time)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.contract.deadline import deadline_message, expired
from worker.pipeline.breaker import CircuitBreaker
from worker.pipeline.capacity import CapacityEstimator
from worker.pipeline.feeder import BatchFeeder
from worker.pipeline.ledger import Job, JobState, Ledger
from worker.pipeline.observer import BatchReport, Observer
from worker.pipeline.outcomes import (
    DEADLINE_EXCEEDED,
    Answering,
    defer,
    from_model,
    reject_request,
    release,
)
from worker.pipeline.writer import ResultWriter
from worker.seams import ModelFailure, ModelSeam, ModelSession, Outputs


class ModelExecutor:
    def __init__(
        self,
        runner: ModelSeam[Any, Any],
        feeder: BatchFeeder,
        ledger: Ledger,
        writer: ResultWriter,
        capacity: CapacityEstimator,
        observer: Observer,
        breaker: CircuitBreaker,
        answering: Answering,
        *,
        on_trip: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        session_rows: int = 32,
    ) -> None:
        self._runner = runner
        self._feeder = feeder
        self._ledger = ledger
        self._writer = writer
        self._capacity = capacity
        self._observer = observer
        self.breaker = breaker
        self._answering = answering
        self._on_trip = on_trip
        self._clock = clock
        self._wall = wall
        self._stopping = False
        self._session_rows = session_rows

    def stop(self) -> None:
        """Finish the batch in hand; start no other."""
        self._stopping = True

    def loop(self) -> None:
        open_session = getattr(self._runner, "open_session", None)
        session: ModelSession | None = open_session() if open_session is not None else None
        if session is not None:
            self._loop_session(session)
            return
        while True:
            self._feeder.want()
            item = self._feeder.handoff.get()
            if item is None or self._stopping:
                self._feeder.taken()
                return  # a prepared batch not started stays RECEIVED: the drain releases it
            jobs, prepared = item
            self._feeder.taken(self._capacity.expected_seconds(len(jobs), _work(jobs, prepared)))
            if self.breaker.tripped:  # hand it back for a healthy replica
                self._writer.accept([release(j) for j in jobs], JobState.RECEIVED)
                continue
            started = self._ledger.start(jobs)
            if started:
                jobs, started, prepared = self._without_expired(jobs, started, prepared)
            if started:
                self._run(jobs, started, prepared)

    # ------------------------------------------------------------------ continuous batching

    def _loop_session(self, session: ModelSession) -> None:
        joined: dict[int, _Joined] = {}  # id(job) -> its join
        fed = True  # the feeder may still hand over batches
        while fed or session.active:
            if fed and not self._stopping and session.rows < self._session_rows:
                try:
                    item = self._feeder.handoff.get(block=session.active == 0)
                except queue.Empty:
                    pass  # nothing ready: decode on
                else:
                    self._feeder.taken()
                    if item is None:
                        fed = False
                    else:
                        self._join(session, item, joined)
            elif self._stopping and not session.active:
                return  # a prepared batch not started stays RECEIVED: the drain releases it
            if session.active:
                self._answer_call(session.step, session, joined)

    def _join(
        self, session: ModelSession, item: tuple[list[Job], Any], joined: dict[int, _Joined]
    ) -> None:
        jobs, prepared = item
        if self._stopping:
            return  # not started: stays RECEIVED, the drain releases it
        if self.breaker.tripped:
            self._writer.accept([release(j) for j in jobs], JobState.RECEIVED)
            return
        started = self._ledger.start(jobs)
        if started:
            jobs, started, prepared = self._without_expired(jobs, started, prepared)
        if not started:
            return
        join = _Joined(started, prepared, self._clock(), time.perf_counter())
        for job in started:
            joined[id(job)] = join
        # jobs a drain released meanwhile were prepared with the others: `_answer` drops their
        # outputs (they are in no join). Not a filter on this join's jobs: a device fault on the
        # join answers every request in the session, earlier joins' too, which that filter
        # dropped (RUNNING for ever, extended to the 12 h cap, never answered or released)
        self._answer_call(lambda: session.add(prepared, jobs), session, joined)

    def _answer_call(
        self,
        call: Callable[[], Sequence[tuple[Any, Any]]],
        session: ModelSession,
        joined: dict[int, _Joined],
    ) -> None:
        """A session call's answers to the writers.

        A call that raises broke the session itself (the session handles its requests' own
        failures): every request in it fails, and the breaker counts it as the runner failing,
        as it counts a static `run` that raised; the joins it ended, all failed, then report
        without blame (a probe that passes must not hide a runner that keeps breaking)."""
        try:
            answers, broke = list(call()), False
        except Exception as exc:
            failure = ModelFailure("ModelError", f"{type(exc).__name__}: {exc}")
            answers, broke = [(job, failure) for job in session.abandon()], True
        self._answer(answers, joined)
        if broke:
            self._record(succeeded=0, not_the_requests_fault=True)

    def _answer(self, answers: list[tuple[Job, Any]], joined: dict[int, _Joined]) -> None:
        """Each answered job's outcome to the writers now; a join whose jobs are all answered
        is reported as one batch (capacity, observer, breaker)."""
        now = self._clock()
        perf = time.perf_counter()
        outcomes = []
        for job, output in answers:
            join = joined.pop(id(job), None)
            if join is None:
                continue
            outcomes += from_model(
                [job], [output], self._answering, now=now, inference_s=perf - join.began
            )
            join.outputs.append(output)
            if len(join.outputs) == len(join.jobs):
                self._joined_done(join, perf - join.began)
        self._writer.accept(outcomes, JobState.RUNNING)

    def _joined_done(self, join: _Joined, inference_s: float) -> None:
        outputs = join.outputs
        succeeded = sum(1 for o in outputs if not isinstance(o, ModelFailure))
        self._report(join.jobs, join.prepared, succeeded, inference_s)
        blame = self._device_failed(outputs, succeeded)
        self._record(succeeded=succeeded, not_the_requests_fault=blame)

    def _record(self, *, succeeded: int, not_the_requests_fault: bool) -> None:
        """One batch's result to the breaker; a trip stops the worker taking work."""
        if self.breaker.record(succeeded=succeeded, not_the_requests_fault=not_the_requests_fault):
            self._observer.breaker_tripped(self.breaker.consecutive)
            self._on_trip()

    # ------------------------------------------------------------------ batch by batch

    def _without_expired(
        self, jobs: list[Job], started: list[Job], prepared: Any
    ) -> tuple[list[Job], list[Job], Any]:
        """The second deadline check: (jobs, started, prepared) with the expired jobs answered
        and taken out, the batch prepared again for the others."""
        now_wall = self._wall()
        late = [j for j in started if j.deadline is not None and expired(j.deadline, now_wall)]
        if not late:
            return jobs, started, prepared
        now = self._clock()
        self._writer.accept(
            [
                reject_request(
                    j, DEADLINE_EXCEEDED,
                    deadline_message(j.deadline or now_wall, now_wall, "just before its batch ran"),
                    self._answering, now=now,
                )
                for j in late
            ],
            JobState.RUNNING,
        )
        self._observer.expired("pre_run", len(late))
        live = [j for j in started if j not in late]
        if not live:
            return [], [], None
        try:
            prepared = self._runner.prepare([(j.encoded, j.request.parameters) for j in live])
        except Exception as exc:
            detail = f"prepare: {type(exc).__name__}: {exc}"
            self._writer.accept(
                [defer(j, "ModelError", detail, self._answering) for j in live], JobState.RUNNING
            )
            return [], [], None
        return live, live, prepared

    def _run(self, jobs: list[Job], started: list[Job], prepared: Any) -> None:
        began = time.perf_counter()
        outputs, runner_failed = self._forward(prepared, len(jobs))
        inference_s = time.perf_counter() - began
        if len(started) < len(jobs):  # a drain released some: their outputs are not ours
            kept = {id(j) for j in started}
            outputs = [o for j, o in zip(jobs, outputs, strict=True) if id(j) in kept]
        outcomes = from_model(
            started, outputs, self._answering, now=self._clock(), inference_s=inference_s
        )
        self._writer.accept(outcomes, JobState.RUNNING)
        succeeded = sum(1 for o in outputs if not isinstance(o, ModelFailure))
        self._report(started, prepared, succeeded, inference_s)
        blame = runner_failed or self._device_failed(outputs, succeeded)
        self._record(succeeded=succeeded, not_the_requests_fault=blame)

    def _forward(self, prepared: Any, n: int) -> tuple[list[Outputs | ModelFailure], bool]:
        """The outputs, and whether the runner itself failed (not one request)."""
        try:
            outputs = self._runner.run(prepared)
            if len(outputs) != n:
                raise RuntimeError(f"model returned {len(outputs)} outputs for {n} requests")
            return outputs, False
        except Exception as exc:
            return [ModelFailure("ModelError", f"{type(exc).__name__}: {exc}")] * n, True

    def _device_failed(self, outputs: Sequence[Outputs | ModelFailure], succeeded: int) -> bool:
        """Whether a batch with no success failed for the device's sake: a device error, or
        only model errors while the device probe fails too (a poison request leaves the probe
        working)."""
        failures = [o for o in outputs if isinstance(o, ModelFailure)]
        if succeeded or not failures:
            return False
        if any(f.device_fault for f in failures):
            return True
        probe = getattr(self._runner, "probe", None)
        if probe is not None and all(f.type == "ModelError" for f in failures):
            try:
                return not probe()
            except Exception:
                return True
        return False

    def _report(self, jobs: list[Job], prepared: Any, succeeded: int, inference_s: float) -> None:
        """A batch the model ran, to the capacity estimator and the observer."""
        self._capacity.record_batch(len(jobs), inference_s, _work(jobs, prepared))
        memory = getattr(self._runner, "cuda_memory_bytes", None)
        self._observer.batch(
            BatchReport(
                size=len(jobs),
                succeeded=succeeded,
                real_tokens=int(getattr(prepared, "real_tokens", 0)),
                padded_tokens=_padded_tokens(prepared),
                inference_s=inference_s,
                queue_wait_max_s=max((j.queue_wait_s for j in jobs), default=0.0),
                held=self._ledger.held,
                gpu_memory_bytes=memory() if memory is not None else None,
            )
        )


def _padded_tokens(prepared: Any) -> int:
    return int(getattr(prepared, "padded_tokens", 0))


def _work(jobs: Sequence[Job], prepared: Any) -> int:
    """What the model computes for a batch: its padded tokens where the runner reports them,
    else its requests."""
    return _padded_tokens(prepared) or len(jobs)


class _Joined:
    """One prepared batch that joined a decode session: reported as a batch once all its jobs
    are answered."""

    def __init__(self, jobs: list[Job], prepared: Any, joined: float, began: float) -> None:
        self.jobs = jobs
        self.prepared = prepared
        self.joined = joined
        self.began = began
        self.outputs: list[Outputs | ModelFailure] = []
