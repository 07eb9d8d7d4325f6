"""The heartbeater: extends the visibility of messages held past half their timeout, on its own
thread and through the control client (short timeouts), so a slow batch or a long wait for one
never makes SQS hand a message to another replica. A failed extension is logged and counted; the
ledger marks each job with an extension in flight (call by call), so a release waits for that
call to return, and no extension starts for a job being released."""

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
    ) -> None:
        self._sqs = sqs
        self._ledger = ledger
        self._observer = observer
        self._visibility_s = visibility_s
        self._enabled = enabled
        self._clock = clock
        self._stop = threading.Event()
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
        extended = failed = 0
        for planned in _by_queue_chunks(due):
            chunk = self._ledger.begin_extensions(planned)
            if not chunk:
                continue
            outcome = self._extend(chunk)
            self._ledger.end_extensions(chunk, outcome.succeeded)
            extended += len(outcome.succeeded)
            if outcome.failed:
                failed += len(outcome.failed)
                event(
                    log,
                    "heartbeat failed: messages may become visible to other replicas",
                    logging.WARNING,
                    failed=len(outcome.failed),
                    error=next(iter(outcome.failed.values()))[:300],
                )
        if due:
            self._observer.heartbeat(extended, failed)
        return extended

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
