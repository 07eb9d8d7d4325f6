"""The ledger: the only owner of the messages a worker holds, from receive to delete or release.

Every held message is a `Job`. Its state moves only through the ledger's compare-and-set
transitions, so two stages can never both act on one message (the drain cannot release a job the
model is running, and then have it answered as well):

    RECEIVED ──start──▶ RUNNING ──finish──▶ FINISHING ──forget──▶ (gone)
        └──────────────finish──────────────────▲

RECEIVED: parsed, encoded or waiting for a batch; any stage may finish it (an error result, a
release on drain). RUNNING: the model executor holds it; only the executor finishes it.
FINISHING: its outcome is decided and a writer sends, deletes or releases it.

The ledger also owns the room to hold more (receivers reserve before they poll: back-pressure)
and the heartbeat bookkeeping: a job whose visibility extension is in flight is marked, and a
release marks its jobs as being released (no extension starts for them after) and waits for a
call in flight to return: a stale extension can never re-hide a message that was just
released. Stages keep their own per-job data (`request`, `encoded`) on the job while they
own it; state, visibility and the extension mark are the ledger's alone.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.heartbeat import Extension, Held, plan_heartbeats
from worker.seams import ReceivedMessage


class JobState(enum.Enum):
    RECEIVED = "received"
    RUNNING = "running"
    FINISHING = "finishing"


@dataclass(eq=False)
class Job:
    """One received message. State fields are written by the ledger only (under its lock)."""

    key: int
    message: ReceivedMessage
    received_mono: float
    received_wall: float
    visible_at: float  # monotonic deadline of the current visibility timeout
    state: JobState = JobState.RECEIVED
    extending: bool = False  # a heartbeat call for it is in flight
    releasing: bool = False  # a writer is making it visible again: no extension may start
    # the encoder's, while the job is RECEIVED:
    request: Any = None
    encoded: Any = None
    deadline: float | None = None  # epoch seconds past which it is not run (None: never)
    #: messages held when it was admitted, itself included (the capacity estimator's sample)
    held_at_admit: int = 1

    @property
    def queue_wait_s(self) -> float:
        sent = self.message.sent_timestamp_ms
        return max(0.0, self.received_wall - sent / 1000.0) if sent else 0.0


class Ledger:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._jobs: dict[int, Job] = {}
        self._reserved = 0
        self._closed = False
        self._keys = itertools.count()

    @property
    def held(self) -> int:
        with self._cond:
            return len(self._jobs)

    def count(self, state: JobState) -> int:
        with self._cond:
            return sum(1 for job in self._jobs.values() if job.state is state)

    # ------------------------------------------------------------------ room (back-pressure)

    def reserve(self, bound: Callable[[], int], most: int) -> int:
        """Block until the worker may hold more than it does; reserve up to `most` places.
        `bound()` is the current limit (it moves as throughput is learned, so it is asked
        again at least every second). 0 once the ledger is closed."""
        with self._cond:
            while not self._closed:
                room = bound() - len(self._jobs) - self._reserved
                if room > 0:
                    n = min(most, room)
                    self._reserved += n
                    return n
                self._cond.wait(1.0)
            return 0

    def cancel(self, reserved: int) -> None:
        with self._cond:
            self._reserved -= reserved
            self._cond.notify_all()

    def admit(
        self, messages: Sequence[ReceivedMessage], reserved: int, visibility_s: int
    ) -> list[Job]:
        """The messages one receive brought, held from now on (in place of the reservation)."""
        now, wall = self._clock(), time.time()
        jobs = [
            Job(next(self._keys), m, now, wall, now + visibility_s) for m in messages
        ]
        with self._cond:
            self._reserved -= reserved
            for job in jobs:
                self._jobs[job.key] = job
                job.held_at_admit = len(self._jobs)
            self._cond.notify_all()
        return jobs

    def close(self) -> None:
        """No more reservations: receivers waiting for room stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for_polls(self, timeout_s: float | None = None) -> bool:
        """Once closed: block until every reservation was admitted or cancelled, that is until
        every poll in flight has returned and what it brought is held here. True when none is
        left (False: `timeout_s` passed first)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._reserved == 0, timeout_s)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ transitions

    def start(self, jobs: Iterable[Job]) -> list[Job]:
        """RECEIVED -> RUNNING for the model executor; jobs another stage finished drop out."""
        return self._move(jobs, JobState.RECEIVED, JobState.RUNNING)

    def finish(self, jobs: Iterable[Job], expected: JobState) -> list[Job]:
        """expected -> FINISHING; returns the jobs that were in `expected` (the caller acts on
        those only)."""
        return self._move(jobs, expected, JobState.FINISHING)

    def unstarted(self) -> list[Job]:
        """The jobs not (yet) on the device: what a drain or the circuit breaker releases. A
        snapshot: `finish(..., RECEIVED)` then moves those still unstarted, and only those."""
        with self._cond:
            return [job for job in self._jobs.values() if job.state is JobState.RECEIVED]

    def _move(self, jobs: Iterable[Job], expected: JobState, to: JobState) -> list[Job]:
        moved = []
        with self._cond:
            for job in jobs:
                if job.state is expected and self._jobs.get(job.key) is job:
                    job.state = to
                    moved.append(job)
        return moved

    def forget(self, jobs: Iterable[Job]) -> None:
        """The worker no longer holds these (deleted, released, or given up on): free the room."""
        with self._cond:
            for job in jobs:
                self._jobs.pop(job.key, None)
            self._cond.notify_all()

    # ------------------------------------------------------------------ heartbeats

    def due_extensions(self, now: float, visibility_s: int) -> list[tuple[Job, Extension]]:
        """The extensions due now (none for a job being extended or released). A plan only:
        `begin_extensions` claims each call's share just before it goes out."""
        with self._cond:
            return self._planned(list(self._jobs.values()), now, visibility_s)

    def begin_extensions(
        self, planned: Sequence[tuple[Job, Extension]], now: float, visibility_s: int
    ) -> list[tuple[Job, Extension]]:
        """Those of one call's planned extensions still wanted (the job held, not being
        released, none in flight, still due at `now`), each planned again from `now` and marked
        in flight. Claimed call by call, not for a whole round: a release waits for at most the
        one call on the wire, not for every call ahead of its job's (which, on a slow endpoint,
        outlasted its wait)."""
        with self._cond:
            claimed = self._planned([job for job, _ in planned], now, visibility_s)
            for job, _ in claimed:
                job.extending = True
            return claimed

    def _planned(
        self, candidates: Sequence[Job], now: float, visibility_s: int
    ) -> list[tuple[Job, Extension]]:
        """The extensions due at `now` for those candidates still held and not being extended
        or released. The caller holds the lock."""
        jobs = {
            job.key: job
            for job in candidates
            if self._jobs.get(job.key) is job and not (job.extending or job.releasing)
        }
        plan = plan_heartbeats(
            (Held(k, j.received_mono, j.visible_at) for k, j in jobs.items()), now, visibility_s
        )
        return [(jobs[extension.key], extension) for extension in plan]

    def end_extensions(
        self, done: Sequence[tuple[Job, Extension]], succeeded: Iterable[int]
    ) -> list[int]:
        """The extension call returned: `succeeded` indexes into `done` moved their deadline.
        Returns the indexes of the jobs still held: a failure for one the writer deleted while
        the call was on the wire lost nothing (the receipt handle died with the message)."""
        with self._cond:
            for index in succeeded:
                job, extension = done[index]
                job.visible_at = extension.visible_at
            for job, _ in done:
                job.extending = False
            self._cond.notify_all()
            return [i for i, (job, _) in enumerate(done) if self._jobs.get(job.key) is job]

    def settle(self, jobs: Sequence[Job], timeout_s: float = 30.0) -> None:
        """Before a release: wait until no visibility extension for these jobs is in flight,
        and mark them so that none starts until they are forgotten (either would land after
        the release and hide the message again for a whole visibility timeout)."""
        deadline = self._clock() + timeout_s
        with self._cond:
            for job in jobs:
                job.releasing = True
            while any(job.extending for job in jobs):
                left = deadline - self._clock()
                if left <= 0:
                    return
                self._cond.wait(left)
