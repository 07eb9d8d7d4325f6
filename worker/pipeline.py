"""The worker's pipeline: from "message received" to "message deleted".

    receivers (N long polls) -> encode queue -> encoder (parse, validate, tokenise)
        -> batcher (group by task, sort by length) -> preparer (pad the next batch)
        -> model thread (one batch on the device) -> writer threads
           (SendMessageBatch results, THEN DeleteMessageBatch the requests)
    heartbeat thread: ChangeMessageVisibilityBatch for messages held past half their timeout

Every message the worker holds is a `Job` in `self._jobs` from receive until it is deleted,
released (visibility set back) or, if SQS cannot be reached, left to expire. The number held is
bounded (back-pressure: the receivers reserve room before they poll), so the worker never holds
more than it can finish before visibility runs out. The model thread does nothing but run
batches: tokenising, padding, parsing and every SQS/S3 call happen on other threads, so the
accelerator does not wait on the network.

Delivery: a request is deleted only after its result was sent (at-least-once). Bad input gets an
error result and is deleted at once. A transient failure (model error, result write failed) leaves
the request in the queue, to come back after a short back-off; the queue's redrive policy moves it
to the DLQ after maxReceiveCount. Nothing is ever re-sent to the input queue (that would reset
ApproximateReceiveCount and defeat the redrive policy).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker import contract
from worker.batching import Batcher, BatchLimits
from worker.config import WorkerSettings
from worker.contract import BadRequest, OutgoingMessage, Request, Timings
from worker.heartbeat import Held, buffer_bound, next_heartbeat_check, plan_heartbeats
from worker.logs import event
from worker.metrics import Metrics
from worker.model import InputTooLong, ModelFailure
from worker.sqs import RECEIVE_MAX, ReceivedMessage, SqsAdapter, chunks

log = logging.getLogger("worker.pipeline")

DEFAULT_MAX_MESSAGE_SIZE = 262_144  # SQS's historical default, used when a queue cannot be asked
WRITER_THREADS = 4  # concurrent result writers: SQS round trips overlap each other
RECENT_SAMPLES = 20_000  # batch sizes and latencies kept for summary() (demo, bench)
MAX_HOLD_WORK_S = 10.0  # auto buffer: at most this much work held, so replicas share a backlog


class ModelSeam(Protocol):
    """What the pipeline needs from a model (worker.model.ModelRunner, or a test double)."""

    name: str

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Any: ...

    def prepare(self, items: Sequence[tuple[Any, Mapping[str, Any]]]) -> Any: ...

    def run(self, prepared: Any) -> list[Any]: ...


class ClaimCheck(Protocol):
    def put(self, body: str) -> tuple[str, str]: ...


@dataclass(eq=False)
class Job:
    """One received message, from receive to delete/release."""

    key: str
    message: ReceivedMessage
    received_mono: float
    received_wall: float
    visible_at: float  # monotonic deadline of the current visibility timeout
    request: Request | None = None
    encoded: Any = None
    # set when the job leaves the model stage:
    action: str = ""  # "send" (then delete) | "release" (visibility back) | "delete" (no result)
    result: OutgoingMessage | None = None
    destination: str | None = None
    release_after_s: int = 0
    outcome: str = ""  # "ok" or an error type, for metrics and logs

    @property
    def queue_wait_s(self) -> float:
        sent = self.message.sent_timestamp_ms
        return max(0.0, self.received_wall - sent / 1000.0) if sent else 0.0


@dataclass
class Stats:
    """Counters the demo and benchmark read (Prometheus has the same, labelled)."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    deleted: int = 0
    released: int = 0
    batches: int = 0
    batched: int = 0  # messages over all batches: the mean batch size without keeping every size
    # Recent samples only: a worker runs for weeks, and a list per batch or per message grew its
    # RSS by ~2 MiB per 70,000 messages in the soak test.
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))
    real_tokens: int = 0
    padded_tokens: int = 0
    inference_s: float = 0.0
    in_worker_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))


class Worker:
    """The pipeline. `start()` spawns the threads; `shutdown()` is the SIGTERM drain."""

    def __init__(
        self,
        settings: WorkerSettings,
        runner: ModelSeam,
        sqs: SqsAdapter,
        *,
        claim_check: ClaimCheck | None = None,
        metrics: Metrics | None = None,
        region: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.sqs = sqs
        self.claim_check = claim_check
        self.metrics = metrics or Metrics()
        self.region = region
        self._clock = clock
        self.stats = Stats()
        self._stats_lock = threading.Lock()

        self._batcher: Batcher[Job] = Batcher(
            BatchLimits(
                settings.max_batch_size, settings.max_batch_tokens, settings.max_wait_ms / 1000.0
            )
        )
        self._batch_cond = threading.Condition()
        self._encode_q: queue.Queue[Job | None] = queue.Queue()
        self._prepared_q: queue.Queue[tuple[list[Job], Any] | None] = queue.Queue(maxsize=1)
        self._model_slot = threading.Semaphore(1)  # one batch prepared ahead of the running one
        self._write_q: queue.Queue[list[Job] | None] = queue.Queue()

        self._jobs: dict[str, Job] = {}
        self._reserved = 0
        self._cap_cond = threading.Condition()
        self._keys = itertools.count()
        self._throughput: deque[tuple[int, float]] = deque(maxlen=32)  # (messages, model seconds)
        # seconds from receive to leaving the worker, for the last messages that left
        self._time_in_worker: deque[float] = deque(maxlen=256)

        self._max_size: dict[str, int] = {}
        self._stop_receiving = threading.Event()
        self._draining = threading.Event()
        self._stopped = threading.Event()
        self._receiving = threading.Event()
        self._threads: list[threading.Thread] = []
        self._receivers: list[threading.Thread] = []
        self._writers: list[threading.Thread] = []
        self.crashed: BaseException | None = None
        self.heartbeats = 0  # visibility extensions made
        # results held back to fill the next SendMessageBatch (model thread only)
        self._carry: dict[tuple[str, str | None], list[Job]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Worker:
        if self.settings.result_queue_url:
            self._max_size[self.settings.result_queue_url] = self.sqs.max_message_size(
                self.settings.result_queue_url
            )
        spawn = self._spawn
        self._threads = [
            spawn("encoder", self._encoder_loop),
            spawn("preparer", self._preparer_loop),
            spawn("model", self._model_loop),
            spawn("heartbeat", self._heartbeat_loop),
        ]
        self._writers = [spawn(f"writer-{i}", self._writer_loop) for i in range(WRITER_THREADS)]
        self._receivers = [
            spawn(f"receiver-{i}", self._receiver_loop) for i in range(self.settings.receivers)
        ]
        self._receiving.set()
        self.metrics.ready.set(1)
        event(log, "worker started", queue_url=self.settings.queue_url, model=self.runner.name)
        return self

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # a dead stage must show in /healthz, not hang silently
                self.crashed = exc
                log.exception("thread %s crashed", name)
                self.metrics.ready.set(0)

        thread = threading.Thread(target=guarded, name=f"gpuqueue-{name}", daemon=True)
        thread.start()
        return thread

    def healthy(self) -> bool:
        if self.crashed is not None:
            return False
        if self._draining.is_set():
            return True  # threads end on purpose while draining
        return all(t.is_alive() for t in self._threads + self._writers + self._receivers)

    def ready(self) -> bool:
        return self._receiving.is_set() and not self._stop_receiving.is_set() and self.healthy()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def held(self) -> int:
        with self._cap_cond:
            return len(self._jobs)

    def buffer_limit(self) -> int:
        throughput = None
        if self._throughput:
            messages = sum(m for m, _ in self._throughput)
            seconds = sum(s for _, s in self._throughput)
            throughput = messages / seconds if seconds > 0 else None
        vis = self.settings.visibility_timeout_s
        return buffer_bound(
            configured=self.settings.buffer_max,
            throughput_msgs_s=throughput,
            completion_msgs_s=self._completion_rate(),
            # half a timeout of work at most (buffer_bound halves it), and no more than
            # MAX_HOLD_WORK_S of it, so one replica does not hoard a backlog others could take
            visibility_timeout_s=int(min(vis, 2 * MAX_HOLD_WORK_S)),
            max_batch_size=self.settings.max_batch_size,
            receivers=self.settings.receivers,
        )

    def _completion_rate(self) -> float | None:
        """Messages leaving the worker per second, by Little's law: held / mean time in worker.
        None until some have left."""
        with self._cap_cond:
            if not self._time_in_worker:
                return None
            mean_s = sum(self._time_in_worker) / len(self._time_in_worker)
            held = max(len(self._jobs), 1)
        return held / mean_s if mean_s > 0 else None

    def shutdown(self, timeout_s: float | None = None) -> None:
        """The drain: stop receiving, finish the batch on the model, release everything not
        finished (visibility 0) at once, wait for the in-flight long polls to return and release
        what they bring too, then flush results and deletes.

        Releasing at once keeps the unstarted work available to the other replicas within a
        second or two (waiting for an idle 20 s long poll first left it invisible that long, and
        a poll returning after the release was never released at all). The price: a released
        message that one of our own last polls picks up again costs it one receive count
        (ApproximateReceiveCount), at most `receivers` x 10 messages per drain."""
        timeout = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = self._clock() + timeout
        event(log, "draining", held=self.held)
        self.metrics.ready.set(0)
        self._stop_receiving.set()
        with self._cap_cond:
            self._cap_cond.notify_all()
        self._draining.set()
        with self._batch_cond:
            self._batch_cond.notify_all()
        self._encode_q.put(None)
        for thread in self._threads[:3]:  # encoder, preparer, model: the batch in hand finishes
            thread.join(max(0.0, deadline - self._clock()))
        self._release_unstarted()
        # leave a little time after the polls for the second release and the flush
        polls_deadline = deadline - min(3.0, timeout / 5)
        for thread in self._receivers:
            thread.join(max(0.0, polls_deadline - self._clock()))
        self._release_unstarted()  # what the last polls brought in after the first release
        for _ in self._writers:
            self._write_q.put(None)
        for thread in self._writers:
            thread.join(max(0.0, deadline - self._clock()))
        self._stopped.set()
        self._threads[3].join(2.0)
        event(log, "drained", held=self.held, **self.summary())

    def _release_unstarted(self) -> None:
        """Every held message that no stage will finish goes back to the queue now."""
        with self._cap_cond:
            pending = [job for job in self._jobs.values() if not job.action]
        for job in pending:
            job.action, job.release_after_s, job.outcome = "release", 0, "released"
        for group in chunks(pending):
            self._write_q.put(list(group))

    # ------------------------------------------------------------------ receive

    def _reserve(self) -> int:
        """Block until there is room to hold more messages; reserve up to one receive's worth."""
        with self._cap_cond:
            while not self._stop_receiving.is_set():
                room = self.buffer_limit() - len(self._jobs) - self._reserved
                if room > 0:
                    n = min(RECEIVE_MAX, room)
                    self._reserved += n
                    return n
                self._cap_cond.wait(1.0)
            return 0

    def _receiver_loop(self) -> None:
        while not self._stop_receiving.is_set():
            n = self._reserve()
            if n == 0:
                break
            try:
                messages = self.sqs.receive(
                    self.settings.queue_url,
                    max_messages=n,
                    wait_s=self.settings.receive_wait_s,
                    visibility_timeout_s=self.settings.visibility_timeout_s,
                )
            except Exception as exc:
                with self._cap_cond:
                    self._reserved -= n
                event(log, "receive failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
                self._stop_receiving.wait(1.0)
                continue
            now, wall = self._clock(), time.time()
            jobs = []
            with self._cap_cond:
                self._reserved -= n
                for message in messages:
                    job = Job(
                        str(next(self._keys)),
                        message,
                        now,
                        wall,
                        now + self.settings.visibility_timeout_s,
                    )
                    self._jobs[job.key] = job
                    jobs.append(job)
                self.metrics.in_flight.set(len(self._jobs))
                self._cap_cond.notify_all()
            with self._stats_lock:
                self.stats.received += len(jobs)
            for job in jobs:
                self.metrics.received.inc()
                self.metrics.observe_queue_wait(job.queue_wait_s)
            if not self._draining.is_set():  # after SIGTERM they wait for the release in shutdown()
                for job in jobs:
                    self._encode_q.put(job)

    # ------------------------------------------------------------------ parse + tokenise

    def _encoder_loop(self) -> None:
        allowed_extra = [self.settings.result_queue_url] if self.settings.result_queue_url else []
        while True:
            job = self._encode_q.get()
            if job is None or self._draining.is_set():
                return
            parsed = contract.parse_request(
                job.message.body,
                worker_task=self.settings.task,
                max_body_bytes=self.settings.max_body_bytes,
                reply_to_patterns=self.settings.reply_to_patterns,
                always_allowed_reply_to=allowed_extra,
                region=self.region,
            )
            if isinstance(parsed, BadRequest):
                self._finish_error(
                    job, parsed.type, parsed.message, parsed.request_id, parsed.reply_to
                )
                continue
            job.request = parsed
            try:
                job.encoded = self.runner.encode(parsed.inputs, parsed.parameters)
            except InputTooLong as exc:
                self._finish_error(job, "InputTooLong", str(exc), parsed.id, parsed.reply_to)
                continue
            except ValueError as exc:  # the model adapter's word for bad parameters
                self._finish_error(job, "InvalidParameters", str(exc), parsed.id, parsed.reply_to)
                continue
            except Exception as exc:
                self._finish_transient(job, "EncodeError", f"{type(exc).__name__}: {exc}")
                continue
            with self._batch_cond:
                self._batcher.add(
                    job,
                    group=parsed.task,
                    rows=len(job.encoded.token_ids),
                    length=job.encoded.max_len,
                    now=self._clock(),
                )
                self._batch_cond.notify_all()

    # ------------------------------------------------------------------ batch + prepare

    def _preparer_loop(self) -> None:
        while not self._draining.is_set():
            # wait for the slot first: a batch formed only when the model can take it next
            # collects whatever arrived meanwhile, and sorts better
            if not self._model_slot.acquire(timeout=0.5):
                continue
            jobs: list[Job] | None = None
            with self._batch_cond:
                while not self._draining.is_set():
                    jobs = self._batcher.take(self._clock())
                    if jobs:
                        break
                    due = self._batcher.next_due(self._clock())
                    self._batch_cond.wait(0.5 if due is None else max(due, 0.0005))
            if not jobs:
                self._model_slot.release()
                break
            try:
                assert all(job.request is not None for job in jobs)
                prepared = self.runner.prepare(
                    [(job.encoded, job.request.parameters) for job in jobs]  # type: ignore[union-attr]
                )
            except Exception as exc:
                for job in jobs:
                    self._finish_transient(
                        job, "ModelError", f"prepare: {type(exc).__name__}: {exc}"
                    )
                self._model_slot.release()
                continue
            self._prepared_q.put((jobs, prepared))
        self._prepared_q.put(None)

    # ------------------------------------------------------------------ model

    def _model_loop(self) -> None:
        while True:
            item = self._prepared_q.get()
            self._model_slot.release()
            if item is None:
                self._flush_carry()
                return
            jobs, prepared = item
            if self._draining.is_set():
                self._flush_carry()
                return  # the prefetched batch is not "in hand": _release_unstarted returns it
            self._run_batch(jobs, prepared)
            if self._prepared_q.empty():
                self._flush_carry()  # no batch right behind this one: do not hold results back

    def _flush_carry(self) -> None:
        for group in self._carry.values():
            for chunk in chunks(group):
                self._write_q.put(list(chunk))
        self._carry.clear()

    def _run_batch(self, jobs: list[Job], prepared: Any) -> None:
        started = time.perf_counter()
        try:
            outputs = self.runner.run(prepared)
            if len(outputs) != len(jobs):
                raise RuntimeError(
                    f"model returned {len(outputs)} outputs for {len(jobs)} requests"
                )
        except Exception as exc:
            outputs = [ModelFailure("ModelError", f"{type(exc).__name__}: {exc}")] * len(jobs)
        inference_s = time.perf_counter() - started
        now = self._clock()
        ok = 0
        out: list[Job] = []
        for job, output in zip(jobs, outputs, strict=True):
            assert job.request is not None
            if isinstance(output, ModelFailure):
                if output.type == "OutOfMemory":
                    # split down to this one request and it still does not fit: retrying cannot help
                    self._finish_error(
                        job,
                        "OutOfMemory",
                        output.message,
                        job.request.id,
                        job.request.reply_to,
                        inference_s=inference_s,
                        out=out,
                    )
                else:
                    self._finish_transient(job, output.type, output.message, out=out)
                continue
            ok += 1
            timings = Timings(job.queue_wait_s, now - job.received_mono, inference_s)
            result = contract.build_result(
                message_id=job.message.message_id,
                request_id=job.request.id,
                model=self.runner.name,
                outputs=output,
                timings=timings,
            )
            self._hand_to_writer(job, result, job.request.reply_to, "ok", out=out)
        # whole SendMessageBatch calls for the writers: results to one destination go out 10 at a
        # time; a remainder (a batch of 32 leaves 2) waits for the next batch's results when that
        # batch is already prepared, so calls stay full (SQS calls per message: the cost driver)
        for job in out:
            self._carry.setdefault((job.action, job.destination), []).append(job)
        for key, group in list(self._carry.items()):
            # releases and bare deletes are rare: not worth holding back
            keep = len(group) % contract.SQS_BATCH_MAX_ENTRIES if key[0] == "send" else 0
            for chunk in chunks(group[: len(group) - keep]):
                self._write_q.put(list(chunk))
            self._carry[key] = group[len(group) - keep :]
        self._throughput.append((len(jobs), inference_s))
        real = int(getattr(prepared, "real_tokens", 0))
        padded = int(getattr(prepared, "padded_tokens", 0))
        ratio = padded / real if real else 1.0
        waits = [job.queue_wait_s for job in jobs]
        self.metrics.batch_size.observe(len(jobs))
        self.metrics.batch_tokens.observe(padded)
        self.metrics.inference_seconds.observe(inference_s)
        self.metrics.padding_ratio.observe(ratio)
        memory = getattr(self.runner, "cuda_memory_bytes", lambda: None)()
        if memory is not None:
            self.metrics.gpu_memory_bytes.set(memory)
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.batched += len(jobs)
            self.stats.batch_sizes.append(len(jobs))
            self.stats.real_tokens += real
            self.stats.padded_tokens += padded
            self.stats.inference_s += inference_s
        event(
            log,
            "batch",
            size=len(jobs),
            ok=ok,
            failed=len(jobs) - ok,
            real_tokens=real,
            padded_tokens=padded,
            padding_ratio=round(ratio, 3),
            inference_s=round(inference_s, 4),
            queue_wait_max_s=round(max(waits), 3) if waits else 0.0,
            held=self.held,
        )

    # ------------------------------------------------------------------ outcomes

    def _hand_to_writer(
        self,
        job: Job,
        result: dict[str, Any],
        reply_to: str | None,
        outcome: str,
        out: list[Job] | None = None,
    ) -> None:
        job.result = contract.result_message(result)
        job.destination = reply_to or self.settings.result_queue_url
        job.outcome = outcome
        if job.destination is None:
            # nowhere to write: the request cannot be answered, now or on a retry
            event(
                log,
                "no result destination: request deleted",
                logging.ERROR,
                message_id=job.message.message_id,
            )
            job.action, job.outcome = "delete", "NoResultDestination"
        else:
            job.action = "send"
        self._put(job, out)

    def _finish_error(
        self,
        job: Job,
        error_type: str,
        message: str,
        request_id: str | None,
        reply_to: str | None,
        inference_s: float = 0.0,
        out: list[Job] | None = None,
    ) -> None:
        """A final error: send an error result, then delete the request."""
        timings = Timings(job.queue_wait_s, self._clock() - job.received_mono, inference_s)
        result = contract.build_result(
            message_id=job.message.message_id,
            request_id=request_id,
            model=self.runner.name,
            error=(error_type, message),
            timings=timings,
        )
        self._hand_to_writer(job, result, reply_to, error_type, out)

    def _finish_transient(
        self, job: Job, error_type: str, message: str, out: list[Job] | None = None
    ) -> None:
        """Leave the request for redelivery after a short back-off (it keeps its receive count,
        so the redrive policy still counts this attempt)."""
        backoff = self._backoff_s(job)
        event(
            log,
            "transient failure: request left for redelivery",
            logging.WARNING,
            message_id=job.message.message_id,
            error_type=error_type,
            error=message[:500],
            receive_count=job.message.receive_count,
            retry_in_s=backoff,
        )
        job.action, job.release_after_s, job.outcome = "release", backoff, error_type
        self._put(job, out)

    def _backoff_s(self, job: Job) -> int:
        """2, 4, 8, ... seconds by receive count, at most one visibility timeout."""
        return min(self.settings.visibility_timeout_s, 2 ** min(job.message.receive_count, 10))

    def _put(self, job: Job, out: list[Job] | None) -> None:
        if out is None:
            self._write_q.put([job])
        else:
            out.append(job)

    # ------------------------------------------------------------------ write

    def _writer_loop(self) -> None:
        while True:
            first = self._write_q.get()
            if first is None:
                return
            jobs = list(first)
            stop_after = False
            # take what else is ready, up to one SendMessageBatch worth per call
            while len(jobs) < contract.SQS_BATCH_MAX_ENTRIES:
                try:
                    more = self._write_q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop_after = True
                    break
                jobs += more
            try:
                self._write(jobs)
            except Exception:
                # never lose track: what was not confirmed stays in the queue and comes back
                log.exception("writer failed; %d requests left for redelivery", len(jobs))
                self._forget(jobs)
            if stop_after:
                return

    def _max_message_size(self, queue_url: str) -> int:
        if queue_url not in self._max_size:
            try:
                self._max_size[queue_url] = self.sqs.max_message_size(queue_url)
            except Exception as exc:
                event(
                    log,
                    "cannot read MaximumMessageSize; assuming 256 KiB",
                    logging.WARNING,
                    queue_url=queue_url,
                    error=str(exc),
                )
                self._max_size[queue_url] = DEFAULT_MAX_MESSAGE_SIZE
        return self._max_size[queue_url]

    def _write(self, jobs: list[Job]) -> None:
        releases = [j for j in jobs if j.action == "release"]
        to_delete = [j for j in jobs if j.action == "delete"]
        by_destination: dict[str, list[Job]] = {}
        for job in jobs:
            if job.action == "send":
                assert job.destination is not None
                by_destination.setdefault(job.destination, []).append(job)
        for destination, group in by_destination.items():
            try:
                to_delete += self._send_results(destination, group)
            except Exception as exc:  # one destination's trouble must not hold up the others
                event(
                    log,
                    "result write failed: requests left for redelivery",
                    logging.WARNING,
                    destination=destination,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                )
                for job in group:
                    job.outcome, job.release_after_s = "ResultWriteFailed", self._backoff_s(job)
                self._release(group)
        if to_delete:
            self._delete(to_delete)
        if releases:
            self._release(releases)

    def _send_results(self, destination: str, jobs: list[Job]) -> list[Job]:
        """Send results; returns the jobs whose result is durably written (safe to delete)."""
        limit = self._max_message_size(destination)
        messages: list[OutgoingMessage] = []
        fitted: list[Job] = []
        for job in jobs:
            try:
                messages.append(self._fit(job, limit))
            except Exception as exc:  # S3 unreachable: this request comes back later
                event(
                    log,
                    "claim-check write failed: request left for redelivery",
                    logging.WARNING,
                    message_id=job.message.message_id,
                    error=str(exc)[:300],
                )
                job.outcome, job.release_after_s = "ResultWriteFailed", self._backoff_s(job)
                self._release([job])
                continue
            fitted.append(job)
        jobs = fitted
        sent: list[Job] = []
        for indexes in contract.pack_send_batches(messages, limit):
            outcome = self.sqs.send_batch(destination, [messages[i] for i in indexes])
            sent += [jobs[indexes[i]] for i in outcome.succeeded]
            failed = [jobs[indexes[i]] for i in outcome.failed]
            for i, reason in outcome.failed.items():
                event(
                    log,
                    "result send failed: request left for redelivery",
                    logging.WARNING,
                    message_id=jobs[indexes[i]].message.message_id,
                    error=reason,
                )
            for job in failed:
                job.outcome, job.release_after_s = "ResultWriteFailed", self._backoff_s(job)
            if failed:
                self._release(failed)
        return sent

    def _fit(self, job: Job, limit: int) -> OutgoingMessage:
        """The message to send for a job: as is, as an S3 pointer, or a ResultTooLarge error."""
        assert job.result is not None
        if not contract.needs_offload(job.result, limit):
            return job.result
        if self.claim_check is not None:
            bucket, key = self.claim_check.put(job.result.body)
            return contract.s3_pointer_message(job.result, bucket, key)
        assert job.request is not None or job.outcome != "ok"
        result = contract.build_result(
            message_id=job.message.message_id,
            request_id=job.request.id if job.request else None,
            model=self.runner.name,
            error=(
                "ResultTooLarge",
                f"the result is {job.result.size} bytes, over the result queue's {limit}-byte "
                "limit, and no WORKER_RESULT_S3_URI is set for larger results",
            ),
        )
        job.outcome = "ResultTooLarge"
        return contract.result_message(result)

    def _delete(self, jobs: list[Job]) -> None:
        for group in chunks(jobs):
            outcome = self.sqs.delete_batch(
                self.settings.queue_url, [j.message.receipt_handle for j in group]
            )
            for i, reason in outcome.failed.items():
                # the result is out; the request will come back and be answered again, and the
                # consumer drops the duplicate by gpuqueue-message-id
                event(
                    log,
                    "delete failed: a duplicate result may follow",
                    logging.WARNING,
                    message_id=group[i].message.message_id,
                    error=reason,
                )
            deleted = [group[i] for i in outcome.succeeded]
            with self._stats_lock:
                self.stats.deleted += len(deleted)
            self._forget(group)

    def _release(self, jobs: list[Job]) -> None:
        for group in chunks(jobs):
            self.sqs.change_visibility_batch(
                self.settings.queue_url,
                [(j.message.receipt_handle, j.release_after_s) for j in group],
            )
            with self._stats_lock:
                self.stats.released += sum(1 for j in group if j.outcome == "released")
            self._forget(group)

    def _forget(self, jobs: Sequence[Job]) -> None:
        """The worker no longer holds these messages: count the outcome, free the room."""
        now = self._clock()
        with self._cap_cond:
            for job in jobs:
                self._jobs.pop(job.key, None)
                if job.outcome != "released":
                    self._time_in_worker.append(now - job.received_mono)
            self.metrics.in_flight.set(len(self._jobs))
            self._cap_cond.notify_all()
        succeeded = failed = 0
        for job in jobs:
            if job.outcome == "ok":
                succeeded += 1
                self.metrics.succeeded.inc()
            elif job.outcome != "released":
                failed += 1
                self.metrics.failed.labels(error_type=job.outcome or "Unknown").inc()
        with self._stats_lock:
            self.stats.succeeded += succeeded
            self.stats.failed += failed
            self.stats.in_worker_s.extend(now - j.received_mono for j in jobs if j.outcome == "ok")

    # ------------------------------------------------------------------ heartbeat

    def _heartbeat_loop(self) -> None:
        interval = next_heartbeat_check(self.settings.visibility_timeout_s)
        while not self._stopped.wait(interval):
            if self.settings.heartbeat:
                self.heartbeat_once()

    def heartbeat_once(self) -> int:
        """Extend the visibility of messages held past half their timeout; returns how many."""
        now = self._clock()
        with self._cap_cond:
            jobs = dict(self._jobs)
        plan = plan_heartbeats(
            (Held(j.key, j.received_mono, j.visible_at) for j in jobs.values()),
            now,
            self.settings.visibility_timeout_s,
        )
        extended = 0
        for group in chunks(plan):
            outcome = self.sqs.change_visibility_batch(
                self.settings.queue_url,
                [(jobs[e.key].message.receipt_handle, e.timeout_s) for e in group],
            )
            for i in outcome.succeeded:
                jobs[group[i].key].visible_at = group[i].visible_at
                extended += 1
        self.heartbeats += extended
        if extended:
            event(log, "heartbeat", extended=extended, held=len(jobs))
        return extended

    # ------------------------------------------------------------------ reporting

    def summary(self) -> dict[str, Any]:
        with self._stats_lock:
            s = self.stats
            latencies = sorted(s.in_worker_s)
            return {
                "received": s.received,
                "succeeded": s.succeeded,
                "failed": s.failed,
                "deleted": s.deleted,
                "released": s.released,
                "batches": s.batches,
                "mean_batch_size": round(s.batched / s.batches, 2) if s.batches else 0.0,
                "padding_ratio": round(s.padded_tokens / s.real_tokens, 3)
                if s.real_tokens
                else 1.0,
                "inference_s": round(s.inference_s, 3),
                "p50_in_worker_s": round(_percentile(latencies, 50), 4),
                "p95_in_worker_s": round(_percentile(latencies, 95), 4),
                "sqs_calls": self.sqs.calls,
            }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100.0 * (len(sorted_values) - 1))))
    return float(sorted_values[index])
