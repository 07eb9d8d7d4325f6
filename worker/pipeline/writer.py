"""Result writers: the last stage. Each outcome is carried out here, and only here: a result is
sent (as is, as an S3 claim-check pointer, or as a ResultTooLarge error), *then* its request is
deleted; a release sets the visibility back.

Outcomes wait in the `Outbox` (worker.pipeline.outbox), grouped by where they go, with a short
linger so calls stay full. Where they go is a queue or an SNS topic: `Destinations`
(worker.pipeline.destinations) sends to either, with its size limit.

A writer's send and delete are two round trips, one after the other, so one writer carries at
most 10 messages per two round trips. For each full group that waits with no writer free,
another writer is started, up to `max_threads` (`WORKER_MAX_WRITERS`): with a cross-cloud round
trip they grow to what the rate needs (rate x 2 x round trip / 10), and where SQS answers in a
millisecond they stay at the configured count. Added writers stay until the worker stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from worker import sqs_limits
from worker.contract.result import build_result, result_message
from worker.contract.wire import pack_send_batches, s3_pointer_message
from worker.errors import DestinationUnreachable
from worker.logs import event
from worker.pipeline.capacity import CapacityEstimator
from worker.pipeline.destinations import Destinations
from worker.pipeline.ledger import JobState, Ledger
from worker.pipeline.observer import Observer
from worker.pipeline.outbox import Outbox
from worker.pipeline.outcomes import RELEASED, Action, Answering, Outcome, backoff_s, reject
from worker.pipeline.threads import GrowingThreads, Spawn
from worker.seams import ClaimCheck, OutgoingMessage, QueueSeam, TopicSeam

log = logging.getLogger("worker.pipeline")

WRITE_FAILED = "ResultWriteFailed"
UNREACHABLE = "ReplyToUnreachable"


class ResultWriter:
    def __init__(
        self,
        sqs: QueueSeam,
        ledger: Ledger,
        capacity: CapacityEstimator,
        observer: Observer,
        answering: Answering,
        *,
        claim_check: ClaimCheck | None,
        threads: int,
        max_threads: int | None = None,
        linger_s: float,
        clock: Callable[[], float] = time.monotonic,
        topics: TopicSeam | None = None,
    ) -> None:
        self._sqs = sqs
        self._ledger = ledger
        self._capacity = capacity
        self._observer = observer
        self._answering = answering
        self._claim_check = claim_check
        self._clock = clock
        self.outbox = Outbox(linger_s, clock)
        self.destinations = Destinations(sqs, topics)
        self.sizes = self.destinations.sizes
        # the thread list: accept() grows it, close() ends its growth
        self._threads = GrowingThreads(
            "writer", configured=threads, most=max_threads,
            added="result writer added: results were waiting for a free one",
        )

    # ------------------------------------------------------------------ taking outcomes

    def accept(self, outcomes: Sequence[Outcome], expected: JobState) -> None:
        """Outcomes for jobs in state `expected`; those another stage finished first drop out."""
        if not outcomes:
            return
        moved = set(self._ledger.finish([o.job for o in outcomes], expected))
        mine = [o for o in outcomes if o.job in moved]
        if not mine:
            return
        if not self.outbox.put(mine):
            event(
                log,
                "outcome after the drain deadline: not written; the messages reappear after "
                "their visibility timeout",
                logging.WARNING,
                messages=len(mine),
            )
        else:
            for _ in range(self.outbox.unserved()):
                self._threads.add()

    # ------------------------------------------------------------------ threads

    @property
    def threads(self) -> list[threading.Thread]:
        return self._threads.threads

    def start(self, spawn: Spawn) -> None:
        self._threads.start(spawn, lambda _number, _added: self._loop)

    def close(self) -> None:
        """Write what is queued, then stop (the writers exit once the outbox is empty). No
        writer is added after this returns, so `threads` is then the list to join."""
        self._threads.close()
        self.outbox.close()

    def _loop(self) -> None:
        while (group := self.outbox.take()) is not None:
            try:
                if group[0].action is Action.SEND:
                    self._send(group)
                else:
                    self._release(group)
            except Exception:
                # never lose track: what was not confirmed stays in the queue and comes back
                log.exception("writer failed; %d requests left for redelivery", len(group))
                self._done(group, deleted=())

    # ------------------------------------------------------------------ send, then delete

    def _send(self, group: list[Outcome]) -> None:
        destination = group[0].destination
        assert destination is not None
        limit = self.destinations.limit(destination)
        fitted: list[tuple[Outcome, OutgoingMessage]] = []
        failed: list[Outcome] = []
        for outcome in group:
            try:
                fit = self._fit(outcome, limit)
            except Exception as exc:  # S3 unreachable: this request comes back later
                failed.append(self._write_failed(outcome, f"claim-check: {exc}"))
                continue
            if fit[1].size > limit:  # even as a pointer or an error (a 1 KiB queue)
                # failed alone: in the group's packing it had failed every result beside it
                reason = f"{fit[1].size} bytes even so, over the {limit}-byte limit"
                failed.append(self._write_failed(outcome, reason))
                continue
            fitted.append(fit)
        sent: list[Outcome] = []
        refit: list[Outcome] = []  # refused as over the queue's real (smaller) limit
        returned: set[int] = set()  # indexes into fitted of calls that returned (sent or failed)
        try:
            for indexes in pack_send_batches([m.size for _, m in fitted], limit):
                result = self.destinations.send_batch(
                    destination, [fitted[i][1] for i in indexes]
                )
                sent += [fitted[indexes[i]][0] for i in result.succeeded]
                for i, reason in result.failed.items():
                    outcome = fitted[indexes[i]][0]
                    if self.destinations.smaller_limit(destination, reason, limit) is not None:
                        refit.append(outcome)
                    else:
                        failed.append(self._write_failed(outcome, reason))
                returned.update(indexes)
        except DestinationUnreachable as exc:
            # only those no call returned for: an entry an earlier call failed is released
            # below, and must not also be answered (and deleted) as unreachable
            self._unreachable([o for i, (o, _) in enumerate(fitted) if i not in returned], exc)
        if failed:
            self._release(failed)
        if sent:
            self._delete(sent)
        if refit:  # once more within the limit now known: an S3 pointer, or ResultTooLarge
            self._send(refit)

    def _fit(self, outcome: Outcome, limit: int) -> tuple[Outcome, OutgoingMessage]:
        """The message to send: as is, as an S3 pointer, or a ResultTooLarge error."""
        assert outcome.result is not None
        message = result_message(outcome.result)
        if message.size <= limit:
            return outcome, message
        if self._claim_check is not None:
            bucket, key = self._claim_check.put(message.body)
            return outcome, s3_pointer_message(message, bucket, key)
        job = outcome.job
        error = build_result(
            message_id=job.message.message_id,
            request_id=outcome.result.get("id"),
            model=self._answering.model,
            error=(
                "ResultTooLarge",
                f"the result is {message.size} bytes, over the result queue's {limit}-byte "
                "limit, and no WORKER_RESULT_S3_URI is set for larger results",
            ),
        )
        return replace(outcome, label="ResultTooLarge", result=error), result_message(error)

    def _write_failed(self, outcome: Outcome, reason: str) -> Outcome:
        job = outcome.job
        return replace(
            outcome,
            action=Action.RELEASE,
            label=WRITE_FAILED,
            release_after_s=backoff_s(job.message.receive_count, self._answering.visibility_s),
            detail=f"result write to {outcome.destination}: {reason}"[:500],
        )

    def _unreachable(self, outcomes: list[Outcome], exc: DestinationUnreachable) -> None:
        """A reply_to that can never be written: the error goes to the result queue and the
        request is deleted (re-running it on the GPU until the DLQ would not help)."""
        result_queue = self._answering.result_queue
        if result_queue is None or exc.destination == result_queue:
            self._release([self._write_failed(o, exc.code) for o in outcomes])
            return
        event(
            log,
            "reply_to unreachable: error results go to the result queue",
            logging.WARNING,
            destination=exc.destination,
            error=exc.code,
            requests=len(outcomes),
        )
        now = self._clock()
        errors = [
            reject(
                o.job, UNREACHABLE, f"reply_to {exc.destination} cannot be written: {exc.code}",
                self._answering, now=now,
                request_id=(o.result or {}).get("id"), reply_to=result_queue,
            )
            for o in outcomes
        ]
        if not self.outbox.put(errors):  # the drain began: the writers take no more groups
            self._send(errors)

    def _delete(self, sent: list[Outcome]) -> None:
        deleted: list[Outcome] = []
        for queue_url, outcomes in _by_source(sent).items():
            for chunk in _chunks(outcomes):
                try:
                    result = self._sqs.delete_batch(
                        queue_url, [o.job.message.receipt_handle for o in chunk]
                    )
                except Exception as exc:
                    event(log, "delete failed: duplicate results may follow", logging.WARNING,
                          error=f"{type(exc).__name__}: {exc}"[:300], messages=len(chunk))
                    continue
                deleted += [chunk[i] for i in result.succeeded]
                for i, reason in result.failed.items():
                    # the result is out; the request comes back and is answered again, and the
                    # consumer drops the duplicate by gpuqueue-message-id
                    event(log, "delete failed: a duplicate result may follow", logging.WARNING,
                          message_id=chunk[i].job.message.message_id, error=reason)
        self._done(sent, deleted)

    # ------------------------------------------------------------------ release

    def _release(self, outcomes: list[Outcome]) -> None:
        jobs = [o.job for o in outcomes]
        self._ledger.settle(jobs)  # an extension in flight must not land after the release
        for outcome in outcomes:
            if outcome.label != RELEASED:
                event(
                    log,
                    "transient failure: request left for redelivery",
                    logging.WARNING,
                    message_id=outcome.job.message.message_id,
                    error_type=outcome.label,
                    error=outcome.detail[:500],
                    receive_count=outcome.job.message.receive_count,
                    retry_in_s=outcome.release_after_s,
                )
        for queue_url, group in _by_source(outcomes).items():
            for chunk in _chunks(group):
                changes = [(o.job.message.receipt_handle, o.release_after_s) for o in chunk]
                try:
                    self._sqs.change_visibility_batch(queue_url, changes)
                except Exception as exc:  # they come back after their visibility timeout
                    event(log, "release failed", logging.WARNING,
                          error=f"{type(exc).__name__}: {exc}"[:300], messages=len(chunk))
        self._done(outcomes, deleted=())

    def _done(self, outcomes: Sequence[Outcome], deleted: Sequence[Outcome]) -> None:
        now = self._clock()
        self._ledger.forget(o.job for o in outcomes)
        self._capacity.record_departures(
            (now - o.job.received_mono, o.job.held_at_admit)
            for o in outcomes
            if o.label != RELEASED
        )
        self._observer.written(outcomes, deleted, now)


def _by_source(outcomes: Sequence[Outcome]) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.job.message.queue_url, []).append(outcome)
    return groups


def _chunks(items: list[Outcome]) -> list[list[Outcome]]:
    size = sqs_limits.BATCH_MAX_ENTRIES
    return [items[i : i + size] for i in range(0, len(items), size)]
