"""The heartbeater: extends the visibility of messages held past half their timeout, on its own
thread and through the control client (short timeouts), so a slow batch or a long wait for one
never makes SQS hand a message to another replica. A failed extension is logged and counted; the
ledger marks each job with an extension in flight (call by call), so a release waits for that
call to return, and no extension starts for a job being released.

A round goes out most urgent first (the earliest deadline), up to `CALLS_IN_FLIGHT` calls at
once: serial calls of 10 at a 50 ms round trip extend under 200 messages a second, and a worker
holding 10,000 lost them to other replicas before their turn came. Each call's timeouts are
planned again when it goes out, so a call that waited in the round neither falls short of its
deadline nor passes the 12 h cap."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from worker.errors import error_code
from worker.heartbeat import Extension, next_heartbeat_check
from worker.logs import event
from worker.pipeline.ledger import Job, Ledger
from worker.pipeline.observer import Observer
from worker.seams import BatchOutcome, QueueSeam
from worker.sqs_limits import BATCH_MAX_ENTRIES

log = logging.getLogger("worker.pipeline")

# calls on the wire at once (each thread keeps its own connection): at a 50 ms round trip,
# bench/heartbeat_capacity.py measured 844 extensions a second against 195 serially, and none of
# 10,000 held messages lost where serial calls lost them all. SQS does not throttle visibility
# changes on standard queues.
CALLS_IN_FLIGHT = 8


class Heartbeater:
    def __init__(
        self,
        sqs: QueueSeam,
        ledger: Ledger,
        observer: Observer,
        *,
        visibility_s: int,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
        calls_in_flight: int = CALLS_IN_FLIGHT,
    ) -> None:
        self._sqs = sqs
        self._ledger = ledger
        self._observer = observer
        self._visibility_s = visibility_s
        self._enabled = enabled
        self._clock = clock
        self._stop = threading.Event()
        self._calls_in_flight = max(1, calls_in_flight)
        self.thread: threading.Thread | None = None

    def start(self, spawn: Callable[[str, Callable[[], None]], threading.Thread]) -> None:
        self.thread = spawn("heartbeat", self._loop)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        interval = next_heartbeat_check(self._visibility_s)
        while not self._stop.wait(interval):
            if self._enabled:
                self.beat()

    def beat(self) -> int:
        """Extend what is due now; returns how many were extended."""
        due = self._ledger.due_extensions(self._clock(), self._visibility_s)
        if not due:
            return 0
        due.sort(key=lambda item: item[0].visible_at)  # the nearest deadline goes out first
        outcomes = self._calls(_by_queue_chunks(due))
        extended = sum(len(o.succeeded) for o in outcomes)
        failed = [o for o in outcomes if o.failed]
        if failed:
            event(
                log,
                "heartbeat failed: messages may become visible to other replicas",
                logging.WARNING,
                failed=sum(len(o.failed) for o in failed),
                error=next(iter(failed[0].failed.values()))[:300],
            )
        self._observer.heartbeat(extended, sum(len(o.failed) for o in failed))
        return extended

    def _calls(self, chunks: list[Sequence[tuple[Job, Extension]]]) -> list[BatchOutcome]:
        """Every chunk's call, in order, up to `calls_in_flight` at once on threads of this
        round alone (daemons, as the heartbeat thread: a call hung on a dead endpoint never
        holds up the process's exit); a crash in one is raised here, on the heartbeat thread."""
        if self._calls_in_flight == 1 or len(chunks) == 1:
            return [self._call(chunk) for chunk in chunks]
        outcomes: list[BatchOutcome] = [BatchOutcome() for _ in chunks]
        crashed: list[BaseException] = []
        turns = iter(range(len(chunks)))
        lock = threading.Lock()

        def take_turns() -> None:
            while True:
                with lock:
                    index = next(turns, None)
                if index is None or crashed:
                    return
                try:
                    outcomes[index] = self._call(chunks[index])
                except BaseException as exc:
                    crashed.append(exc)
                    return

        callers = [
            threading.Thread(target=take_turns, name="gpuqueue-heartbeat-call", daemon=True)
            for _ in range(min(self._calls_in_flight, len(chunks)))
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        if crashed:
            raise crashed[0]
        return outcomes

    def _call(self, planned: Sequence[tuple[Job, Extension]]) -> BatchOutcome:
        """One call's share of a round: claimed and planned again as it goes out."""
        chunk = self._ledger.begin_extensions(planned, self._clock(), self._visibility_s)
        if not chunk:
            return BatchOutcome()
        outcome = self._extend(chunk)
        held = set(self._ledger.end_extensions(chunk, outcome.succeeded))
        failed = {i: reason for i, reason in outcome.failed.items() if i in held}
        return BatchOutcome(succeeded=outcome.succeeded, failed=failed)

    def _extend(self, chunk: Sequence[tuple[Job, Extension]]) -> BatchOutcome:
        queue_url = chunk[0][0].message.queue_url
        changes = [(job.message.receipt_handle, e.timeout_s) for job, e in chunk]
        try:
            return self._sqs.change_visibility_batch(queue_url, changes)
        except Exception as exc:  # e.g. the input queue is gone
            reason = f"{error_code(exc)}: {exc}"
            return BatchOutcome(failed={i: reason for i in range(len(chunk))})


def _by_queue_chunks(
    due: Sequence[tuple[Job, Extension]],
) -> list[Sequence[tuple[Job, Extension]]]:
    by_queue: dict[str, list[tuple[Job, Extension]]] = {}
    for item in due:
        by_queue.setdefault(item[0].message.queue_url, []).append(item)
    size = BATCH_MAX_ENTRIES
    return [items[i : i + size] for items in by_queue.values() for i in range(0, len(items), size)]
