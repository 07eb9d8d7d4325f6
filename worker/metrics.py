"""Prometheus metrics (names agreed in NAMES.md, prefix `gpuqueue_`). One registry per worker, so
several workers can live in one process (tests, the benchmark) without clashing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512)
_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
_RATIO_BUCKETS = (1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "gpuqueue_messages_received", "Messages received from the input queue", registry=r
        )
        self.succeeded = Counter(
            "gpuqueue_messages_succeeded",
            "Requests answered with an ok result and deleted",
            registry=r,
        )
        self.failed = Counter(
            "gpuqueue_messages_failed",
            "Requests that failed, by error type (bad input is deleted; transient errors are left "
            "for redelivery)",
            ["error_type"],
            registry=r,
        )
        self.batch_size = Histogram(
            "gpuqueue_batch_size", "Requests per model batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "gpuqueue_batch_tokens",
            "Padded tokens per model batch",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "gpuqueue_inference_seconds",
            "Model time per batch",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "gpuqueue_queue_wait_seconds",
            "From SentTimestamp to receive by this worker",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "gpuqueue_in_flight_messages",
            "Messages received and not yet deleted or released",
            registry=r,
        )
        self.padding_ratio = Histogram(
            "gpuqueue_padding_ratio",
            "Padded tokens / real tokens per batch (1.0 = no padding)",
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.gpu_memory_bytes = Gauge(
            "gpuqueue_gpu_memory_bytes",
            "CUDA memory allocated by the model (absent on CPU)",
            registry=r,
        )
        self.ready = Gauge(
            "gpuqueue_ready", "1 once the model is warm and the worker receives", registry=r
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
