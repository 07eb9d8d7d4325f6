"""Prometheus metrics (names agreed in NAMES.md, prefix `gpuqueue_`). One registry per worker, so
several workers can live in one process (tests, the benchmark) without clashing."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from worker.pipeline.ledger import Job
from worker.pipeline.observer import BatchReport, NullObserver
from worker.pipeline.outcomes import Action, Outcome

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
_RATIO_BUCKETS = (1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._declare_requests(self.registry)
        self._declare_batches(self.registry)
        self._declare_queues(self.registry)
        self._declare_health(self.registry)
        self._declare_images(self.registry)
        self._oldest_age = WindowMax()

    def _declare_requests(self, r: CollectorRegistry) -> None:
        """What happened to requests: received, answered, failed, expired."""
        self.received = Counter(
            "gpuqueue_messages_received", "Messages received from the input queue", registry=r
        )
        self.received_by_queue = Counter(
            "gpuqueue_messages_received_by_queue",
            "Messages received, by input queue name (WORKER_QUEUE_URLS)",
            ["queue"],
            registry=r,
        )
        self.succeeded = Counter(
            "gpuqueue_messages_succeeded",
            "Requests answered with an ok result and deleted",
            registry=r,
        )
        self.failed = Counter(
            "gpuqueue_messages_failed",
            "Requests that failed, by error type and whether that was final (final=\"true\": "
            "answered with the error and deleted; \"false\": left for redelivery, the DLQ after "
            "maxReceiveCount)",
            ["error_type", "final"],
            registry=r,
        )
        self.requests_expired = Counter(
            "gpuqueue_requests_expired",
            "Requests past their deadline (answered DeadlineExceeded, never run), by where they "
            "were caught: parse (encoders) or pre_run (just before their batch)",
            ["stage"],
            registry=r,
        )
        self.in_flight = Gauge(
            "gpuqueue_in_flight_messages",
            "Messages received and not yet deleted or released",
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "gpuqueue_queue_wait_seconds",
            "From SentTimestamp to receive by this worker",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )

    def _declare_batches(self, r: CollectorRegistry) -> None:
        """What the model did with them: batch sizes, padding, time, device memory."""
        self.batch_size = Histogram(
            "gpuqueue_batch_size", "Requests per model batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "gpuqueue_batch_tokens",
            "Padded tokens per model batch",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.padding_ratio = Histogram(
            "gpuqueue_padding_ratio",
            "Padded tokens / real tokens per batch (1.0 = no padding)",
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "gpuqueue_inference_seconds",
            "Model time per batch",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.gpu_memory_bytes = Gauge(
            "gpuqueue_gpu_memory_bytes",
            "CUDA memory allocated by the model (absent on CPU)",
            registry=r,
        )

    def _declare_queues(self, r: CollectorRegistry) -> None:
        """The queues themselves."""
        # Set by worker.queue_monitor (WORKER_QUEUE_METRICS_INTERVAL_S). Every replica reports the
        # same queue-wide numbers: alert and plot on max() across pods, never sum().
        self.queue_messages = Gauge(
            "gpuqueue_queue_messages",
            "SQS ApproximateNumberOfMessages* of the input queue and its dead-letter queue",
            ["queue", "state"],
            registry=r,
        )
        self.oldest_message_age_seconds = Gauge(
            "gpuqueue_oldest_message_age_seconds",
            "Age (now - SentTimestamp) of the oldest message this worker received during the "
            "last queue-metrics interval; 0 when it received none",
            registry=r,
        )
        self.queue_metrics_errors = Counter(
            "gpuqueue_queue_metrics_errors",
            "Failed reads of queue attributes by the queue monitor",
            ["queue"],
            registry=r,
        )

    def _declare_health(self, r: CollectorRegistry) -> None:
        """What keeps the worker healthy: readiness, heartbeats, receive errors, the breaker."""
        self.ready = Gauge(
            "gpuqueue_ready", "1 once the model is warm and the worker receives", registry=r
        )
        self.heartbeats = Counter(
            "gpuqueue_heartbeats", "Visibility extensions made (heartbeats)", registry=r
        )
        self.heartbeat_failures = Counter(
            "gpuqueue_heartbeat_failures",
            "Visibility extensions that failed (the message may be redelivered elsewhere)",
            registry=r,
        )
        self.receive_errors = Counter(
            "gpuqueue_receive_errors", "ReceiveMessage calls that failed", registry=r
        )
        self.circuit_breaker_trips = Counter(
            "gpuqueue_circuit_breaker_trips",
            "Times the device kept failing and the worker stopped taking work (/healthz fails)",
            registry=r,
        )

    def _declare_images(self, r: CollectorRegistry) -> None:
        """Image tasks (worker.images.loader reports them through ImageMetrics)."""
        self.images = Counter(
            "gpuqueue_images",
            "Images fetched, decoded and preprocessed (image tasks); its rate is images/s",
            registry=r,
        )
        self.image_bytes_fetched = Counter(
            "gpuqueue_image_bytes_fetched",
            "Bytes of image files read, by source (s3, url; base64 inputs are not fetched)",
            ["source"],
            registry=r,
        )
        self.image_fetch_seconds = Histogram(
            "gpuqueue_image_fetch_seconds",
            "Time to read one image file, by source (s3, url)",
            ["source"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )

    def observe_queue_wait(self, seconds: float) -> None:
        """A message was received `seconds` after it was sent: the histogram, and the age window
        the queue monitor turns into gpuqueue_oldest_message_age_seconds."""
        self.queue_wait_seconds.observe(seconds)
        self._oldest_age.observe(seconds)

    def take_oldest_received_age(self) -> float | None:
        """The largest queue wait seen since the previous call (None: nothing received)."""
        return self._oldest_age.take()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class ImageMetrics:
    """The image loader's reports as metrics (satisfies worker.images.loader.ImageStats)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def fetched(self, source: str, nbytes: int, seconds: float) -> None:
        self.metrics.image_bytes_fetched.labels(source=source).inc(nbytes)
        self.metrics.image_fetch_seconds.labels(source=source).observe(seconds)

    def decoded(self, images: int, seconds: float) -> None:
        self.metrics.images.inc(images)


class WindowMax:
    """Largest value observed since the last `take()` (thread-safe: receivers observe, the queue
    monitor takes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._max: float | None = None

    def observe(self, value: float) -> None:
        with self._lock:
            if self._max is None or value > self._max:
                self._max = value

    def take(self) -> float | None:
        with self._lock:
            value, self._max = self._max, None
            return value


class PrometheusObserver(NullObserver):
    """The pipeline's events as Prometheus metrics (see worker.pipeline.observer)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def lifecycle(self, phase: str, **fields: Any) -> None:
        self.metrics.ready.set(1 if phase == "started" else 0)

    def received(self, jobs: Sequence[Job]) -> None:
        self.metrics.received.inc(len(jobs))
        for job in jobs:
            self.metrics.observe_queue_wait(job.queue_wait_s)
        if jobs:  # one receive: one queue
            name = jobs[0].message.queue_url.rstrip("/").rsplit("/", 1)[-1]
            self.metrics.received_by_queue.labels(queue=name).inc(len(jobs))

    def receive_failed(self, error: str) -> None:
        self.metrics.receive_errors.inc()

    def batch(self, report: BatchReport) -> None:
        m = self.metrics
        m.batch_size.observe(report.size)
        m.batch_tokens.observe(report.padded_tokens)
        m.inference_seconds.observe(report.inference_s)
        m.padding_ratio.observe(report.padding_ratio)
        if report.gpu_memory_bytes is not None:
            m.gpu_memory_bytes.set(report.gpu_memory_bytes)

    def written(self, outcomes: Sequence[Outcome], deleted: Sequence[Outcome], now: float) -> None:
        labels = Tally(
            (o.label, "false" if o.action is Action.RELEASE else "true")
            for o in outcomes if o.failed
        )
        # answered *and deleted*: one whose delete failed comes back, and counts when it goes
        ok = sum(1 for o in deleted if o.label == "ok")
        if ok:
            self.metrics.succeeded.inc(ok)
        for (label, final), n in labels.items():
            self.metrics.failed.labels(error_type=label, final=final).inc(n)

    def heartbeat(self, extended: int, failed: int) -> None:
        if extended:
            self.metrics.heartbeats.inc(extended)
        if failed:
            self.metrics.heartbeat_failures.inc(failed)

    def breaker_tripped(self, consecutive: int) -> None:
        self.metrics.circuit_breaker_trips.inc()
        self.metrics.ready.set(0)

    def expired(self, stage: str, count: int) -> None:
        self.metrics.requests_expired.labels(stage=stage).inc(count)
