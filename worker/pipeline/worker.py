"""The worker: a short composition root. It builds the stages around one ledger, starts them, and
shuts them down in an explicit order, each step with its own time budget.

    receivers ─▶ encoders ─▶ batch feeder ─▶ model executor ─▶ result writers
        (long polls)  (parse,      (batches,       (the device)      (send, then delete;
                      tokenise)    prepare next)                      or release)
    heartbeater: visibility extensions for what is held long     ledger: every held message

Delivery: a request is deleted only after its result was sent (at-least-once). Bad input gets an
error result and is deleted at once. A transient failure (model error, result write failed)
leaves the request in the queue, to come back after a short back-off; the queue's redrive policy
moves it to the DLQ after maxReceiveCount. Nothing is ever re-sent to the input queue (that would
reset ApproximateReceiveCount and defeat the redrive policy).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.batching import BatchLimits
from worker.config import WorkerSettings
from worker.contract.reply_to import ReplyToPolicy
from worker.contract.request import parse_request
from worker.errors import ConfigError
from worker.pipeline.breaker import CircuitBreaker
from worker.pipeline.capacity import CapacityEstimator
from worker.pipeline.encoder import Encoders
from worker.pipeline.executor import ModelExecutor
from worker.pipeline.feeder import BatchFeeder
from worker.pipeline.heartbeater import Heartbeater
from worker.pipeline.ledger import JobState, Ledger
from worker.pipeline.observer import LogObserver, Observer, Observers, StatsObserver
from worker.pipeline.outcomes import Answering, release
from worker.pipeline.receiver import Receivers
from worker.pipeline.writer import ResultWriter
from worker.seams import ClaimCheck, ModelSeam, QueueSeam, TopicSeam
from worker.tasks import is_image_task

log = logging.getLogger("worker.pipeline")


def batch_limits(settings: WorkerSettings) -> BatchLimits:
    # image tasks: every image costs the same (a fixed-size tensor), so the batch budget is a
    # count of images (each image's "length" is 1)
    budget = (
        settings.max_batch_images if is_image_task(settings.task) else settings.max_batch_tokens
    )
    return BatchLimits(
        settings.max_batch_size,
        budget,
        settings.max_wait_ms / 1000.0,
        max_reorder_s=settings.max_reorder_ms / 1000.0,
    )


class Worker:
    """`start()` spawns the stages; `shutdown()` is the SIGTERM drain."""

    def __init__(
        self,
        settings: WorkerSettings,
        runner: ModelSeam[Any, Any],
        sqs: QueueSeam,
        *,
        claim_check: ClaimCheck | None = None,
        observers: Sequence[Observer] = (),
        reply_to: ReplyToPolicy | None = None,
        region: str = "",
        clock: Callable[[], float] = time.monotonic,
        topics: TopicSeam | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.sqs = sqs
        self.region = region
        self._reply_to = reply_to
        self._topics = topics
        self._clock = clock
        self.stats = StatsObserver()
        self.observer = Observers([self.stats, LogObserver(), *observers])
        self.ledger = Ledger(clock)
        self.capacity = CapacityEstimator(
            configured=settings.buffer_max,
            visibility_timeout_s=settings.visibility_timeout_s,
            max_batch_size=settings.max_batch_size,
            receivers=settings.receivers,
        )
        answering = Answering(
            runner.name, settings.result_queue_url, settings.visibility_timeout_s
        )
        self.writer = ResultWriter(
            sqs, self.ledger, self.capacity, self.observer, answering,
            claim_check=claim_check, threads=settings.writers, max_threads=settings.max_writers,
            linger_s=settings.result_linger_ms / 1000.0, clock=clock, topics=topics,
        )
        self.feeder = BatchFeeder(
            runner, batch_limits(settings), self.writer, answering, clock=clock
        )
        self.executor = ModelExecutor(
            runner, self.feeder, self.ledger, self.writer, self.capacity, self.observer,
            CircuitBreaker(settings.circuit_breaker_batches), answering,
            on_trip=self._trip, clock=clock, session_rows=settings.max_batch_size,
        )
        self.encoders = Encoders(
            runner, self._parse, self.feeder, self.writer, answering,
            count=settings.encoders, clock=clock, observer=self.observer,
            default_ttl_s=settings.default_ttl_s,
        )
        self.heartbeater = Heartbeater(
            sqs, self.ledger, self.observer,
            visibility_s=settings.visibility_timeout_s, enabled=settings.heartbeat, clock=clock,
        )
        self.receivers = Receivers(
            sqs, self.ledger, self.capacity, self.observer, self.encoders.submit,
            queue_url=settings.input_queue_urls, wait_s=settings.receive_wait_s,
            visibility_s=settings.visibility_timeout_s, count=settings.receivers,
            max_count=settings.max_receivers,
            weights=settings.input_queue_weights,
        )
        self._model_thread: threading.Thread | None = None
        self._receiving = threading.Event()
        self._draining = threading.Event()
        self._stopped = threading.Event()
        self.crashed: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Worker:
        if self._reply_to is None:
            self._reply_to = self._default_reply_to()
        if self._reply_to.allows_topics and self._topics is None:
            raise ConfigError("WORKER_REPLY_TO_ALLOW: names SNS topics, but no SNS client given")
        if self.settings.result_queue_url:
            self.writer.sizes.of(self.settings.result_queue_url)  # asked once, at start
        spawn = self._spawn
        self.writer.start(spawn)
        self._model_thread = spawn("model", self.executor.loop)
        self.feeder.start(spawn)
        self.encoders.start(spawn)
        self.heartbeater.start(spawn)
        self.receivers.start(spawn)
        self._receiving.set()
        self.observer.lifecycle(
            "started", queue_url=",".join(self.settings.input_queue_urls), model=self.runner.name
        )
        return self

    def _default_reply_to(self) -> ReplyToPolicy:
        """The allow-list, with this worker's own input queues and their DLQs refused."""
        dlqs = []
        for queue_url in self.settings.input_queue_urls:
            attributes = self.sqs.queue_attributes(queue_url, ["RedrivePolicy"])
            redrive = attributes.get("RedrivePolicy")
            dlqs.append(json.loads(redrive).get("deadLetterTargetArn") if redrive else None)
        return ReplyToPolicy.build(
            self.settings.reply_to_patterns,
            region=self.region,
            input_queue_url=self.settings.input_queue_urls,
            result_queue_url=self.settings.result_queue_url,
            dead_letter_arn=[d for d in dlqs if d],
        )

    def _parse(self, body: str) -> Any:
        assert self._reply_to is not None
        return parse_request(
            body,
            worker_task=self.settings.task,
            max_body_bytes=self.settings.max_body_bytes,
            reply_to=self._reply_to,
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # a dead stage must show in /healthz, not hang silently
                self.crashed = exc
                log.exception("thread %s crashed", name)

        thread = threading.Thread(target=guarded, name=f"gpuqueue-{name}", daemon=True)
        thread.start()
        return thread

    def _threads(self) -> list[threading.Thread]:
        return [*self._stage_threads(), *self.receivers.threads]

    def _stage_threads(self) -> list[threading.Thread]:
        """Every thread but the receivers' (their list changes: `Receivers.alive` says)."""
        stages = [self._model_thread, self.feeder.thread, self.heartbeater.thread]
        return [*(t for t in stages if t is not None), *self.encoders.threads,
                *self.writer.threads]

    def _trip(self) -> None:
        """The circuit breaker tripped: receive nothing more, hand back everything not running
        now, and what the last long polls bring once every one of them has ended. Handed on,
        a message one of them brought would be released at once, for another of our own polls
        still in flight to take again, each time a receive count (the DLQ after
        maxReceiveCount, for a fault of the device): held until then, it pays at most one, as
        in the drain."""
        self.ledger.close()
        self.receivers.drain()
        self._release_unstarted()
        self._spawn("breaker-handback", self._hand_back_after_the_last_polls)

    def _hand_back_after_the_last_polls(self) -> None:
        # Each poll in flight holds a reservation in the ledger until what it brought is
        # admitted: the ledger, not the receivers' thread list, knows when the last has ended
        # (a trip during start() came before that list was even set, and released too early).
        self.ledger.wait_for_polls()  # a poll ends within its wait, or its client's read timeout
        self._release_unstarted()

    def _release_unstarted(self) -> None:
        unstarted = self.ledger.unstarted()
        self.writer.accept([release(j) for j in unstarted], JobState.RECEIVED)

    # ------------------------------------------------------------------ probes

    def healthy(self) -> bool:
        if self.crashed is not None or self.executor.breaker.tripped:
            return False
        if self._draining.is_set():
            return True  # threads end on purpose while draining
        return all(t.is_alive() for t in self._stage_threads()) and self.receivers.alive()

    def ready(self) -> bool:
        return (
            self._receiving.is_set() and not self._draining.is_set() and self.healthy()
            and self.receivers.receiving()
        )

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def held(self) -> int:
        return self.ledger.held

    # ------------------------------------------------------------------ the drain

    def shutdown(self, timeout_s: float | None = None) -> None:
        """The SIGTERM drain, in this order (each step with its own budget):

        1. stop receiving: the ledger takes no reservations, the receivers hand nothing on;
        2. release every message not on the device at once (visibility 0): other replicas can
           take it within a second or two;
        3. let the batch on the device finish (until the deadline less the flush budget); a job
           the model holds is never released behind its back, so one message is never both
           released and answered;
        4. let the last long polls return, and release what they brought;
        5. flush the writers (results, deletes, releases) within the flush budget;
        6. stop the heartbeats last: what the model still holds keeps its visibility.

        The price of (2) and (4): a released message that one of our own last polls picks up
        again costs it one receive count, at most (receivers running) x 10 messages per drain."""
        timeout = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = self._clock() + timeout
        flush_budget = min(5.0, timeout / 4)
        self._draining.set()
        self.observer.lifecycle("draining", held=self.held)
        self.ledger.close()
        self.receivers.drain()
        self.executor.stop()
        self.feeder.stop()
        self.encoders.stop()
        self._release_unstarted()
        self._join([self._model_thread], deadline - flush_budget)
        self._join(self.receivers.threads, deadline - flush_budget)
        self.ledger.wait_for_polls(max(0.0, deadline - flush_budget - self._clock()))
        self._release_unstarted()
        self._join([self.feeder.thread, *self.encoders.threads], deadline - flush_budget)
        self._release_unstarted()  # anything the stopped stages left behind
        self.writer.close()
        self._join(self.writer.threads, deadline)
        self.heartbeater.stop()
        self._join([self.heartbeater.thread], self._clock() + 2.0)
        self._stopped.set()
        # a stage still running here (a long poll past its budget) dies with the process: its
        # messages wait out their visibility timeout, so the drain's log line names it
        running = [t.name for t in self._threads() if t.is_alive()]
        self.observer.lifecycle("drained", held=self.held, still_running=running, **self.summary())

    def _join(self, threads: Sequence[threading.Thread | None], until: float) -> None:
        for thread in threads:
            if thread is not None:
                thread.join(max(0.0, until - self._clock()))

    # ------------------------------------------------------------------ reporting

    def summary(self) -> dict[str, Any]:
        return {
            **self.stats.summary(),
            "sqs_calls": self.sqs.calls,
            "result_writers": len(self.writer.threads),
            "receivers": len(self.receivers.threads),
        }
