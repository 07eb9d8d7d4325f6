"""The observer seam: what the pipeline tells the outside about itself, in one place.

Stages call one `Observer` (a fan-out of several); Prometheus (`worker.metrics.
PrometheusObserver`), the summary statistics the demo and the benchmark print (`StatsObserver`)
and the per-batch log line (`LogObserver`) are observers, not code in the core loop. An observer
must be cheap and must not raise: it runs on the stage's own thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.logs import event
from worker.pipeline.ledger import Job
from worker.pipeline.outcomes import RELEASED, Outcome

log = logging.getLogger("worker.pipeline")

# batch sizes and latencies kept for summary(): bounded, since a worker runs for weeks
RECENT_SAMPLES = 20_000


@dataclass(frozen=True)
class BatchReport:
    size: int
    succeeded: int
    real_tokens: int
    padded_tokens: int
    inference_s: float
    queue_wait_max_s: float
    held: int
    gpu_memory_bytes: int | None = None

    @property
    def padding_ratio(self) -> float:
        return self.padded_tokens / self.real_tokens if self.real_tokens else 1.0


class Observer(Protocol):
    def lifecycle(self, phase: str, **fields: Any) -> None:
        """"started", "draining", "drained"."""

    def received(self, jobs: Sequence[Job]) -> None: ...

    def receive_failed(self, error: str) -> None: ...

    def batch(self, report: BatchReport) -> None: ...

    def written(self, outcomes: Sequence[Outcome], deleted: Sequence[Outcome], now: float) -> None:
        """Outcomes carried out: results sent (`deleted`: those whose request was deleted too)
        or releases."""

    def heartbeat(self, extended: int, failed: int) -> None: ...

    def breaker_tripped(self, consecutive: int) -> None: ...

    def expired(self, stage: str, count: int) -> None:
        """`count` requests past their deadline, caught at `stage` ("parse": by the encoders;
        "pre_run": just before their batch ran)."""


class Observers:
    """Fan-out to several observers."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._all = tuple(observers)

    def lifecycle(self, phase: str, **fields: Any) -> None:
        for o in self._all:
            o.lifecycle(phase, **fields)

    def received(self, jobs: Sequence[Job]) -> None:
        for o in self._all:
            o.received(jobs)

    def receive_failed(self, error: str) -> None:
        for o in self._all:
            o.receive_failed(error)

    def batch(self, report: BatchReport) -> None:
        for o in self._all:
            o.batch(report)

    def written(self, outcomes: Sequence[Outcome], deleted: Sequence[Outcome], now: float) -> None:
        for o in self._all:
            o.written(outcomes, deleted, now)

    def heartbeat(self, extended: int, failed: int) -> None:
        for o in self._all:
            o.heartbeat(extended, failed)

    def breaker_tripped(self, consecutive: int) -> None:
        for o in self._all:
            o.breaker_tripped(consecutive)

    def expired(self, stage: str, count: int) -> None:
        for o in self._all:
            o.expired(stage, count)


class NullObserver:
    """Every event ignored: the base of observers that care about a few."""

    def lifecycle(self, phase: str, **fields: Any) -> None:
        pass

    def received(self, jobs: Sequence[Job]) -> None:
        pass

    def receive_failed(self, error: str) -> None:
        pass

    def batch(self, report: BatchReport) -> None:
        pass

    def written(self, outcomes: Sequence[Outcome], deleted: Sequence[Outcome], now: float) -> None:
        pass

    def heartbeat(self, extended: int, failed: int) -> None:
        pass

    def breaker_tripped(self, consecutive: int) -> None:
        pass

    def expired(self, stage: str, count: int) -> None:
        pass


class LogObserver(NullObserver):
    """One JSON line per lifecycle step and per batch; heartbeats when they do something."""

    def lifecycle(self, phase: str, **fields: Any) -> None:
        event(log, "worker started" if phase == "started" else phase, **fields)

    def batch(self, report: BatchReport) -> None:
        if log.isEnabledFor(logging.INFO):
            event(
                log,
                "batch",
                size=report.size,
                ok=report.succeeded,
                failed=report.size - report.succeeded,
                real_tokens=report.real_tokens,
                padded_tokens=report.padded_tokens,
                padding_ratio=round(report.padding_ratio, 3),
                inference_s=round(report.inference_s, 4),
                queue_wait_max_s=round(report.queue_wait_max_s, 3),
                held=report.held,
            )

    def heartbeat(self, extended: int, failed: int) -> None:
        if extended:
            event(log, "heartbeat", extended=extended)

    def breaker_tripped(self, consecutive: int) -> None:
        event(
            log,
            "circuit breaker tripped: the device keeps failing; stopped receiving, released "
            "what was held, /healthz now fails so the pod is restarted",
            logging.ERROR,
            consecutive_failed_batches=consecutive,
        )


class StatsObserver(NullObserver):
    """Counters and recent samples for `Worker.summary()` (the demo and the benchmark)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received_n = self.succeeded = self.failed = self.deleted = self.released = 0
        self.batches = self.batched = self.real_tokens = self.padded_tokens = 0
        self.inference_s = 0.0
        self.heartbeats = self.heartbeat_failures = 0
        self.batch_sizes: deque[int] = deque(maxlen=RECENT_SAMPLES)
        self.in_worker_s: deque[float] = deque(maxlen=RECENT_SAMPLES)

    def received(self, jobs: Sequence[Job]) -> None:
        with self._lock:
            self.received_n += len(jobs)

    def batch(self, report: BatchReport) -> None:
        with self._lock:
            self.batches += 1
            self.batched += report.size
            self.batch_sizes.append(report.size)
            self.real_tokens += report.real_tokens
            self.padded_tokens += report.padded_tokens
            self.inference_s += report.inference_s

    def written(self, outcomes: Sequence[Outcome], deleted: Sequence[Outcome], now: float) -> None:
        ok = [o for o in outcomes if o.label == "ok"]
        with self._lock:
            self.deleted += len(deleted)
            self.succeeded += len(ok)
            self.failed += sum(1 for o in outcomes if o.failed)
            self.released += sum(1 for o in outcomes if o.label == RELEASED)
            self.in_worker_s.extend(now - o.job.received_mono for o in ok)

    def heartbeat(self, extended: int, failed: int) -> None:
        with self._lock:
            self.heartbeats += extended
            self.heartbeat_failures += failed

    def summary(self) -> dict[str, Any]:
        with self._lock:
            latencies = sorted(self.in_worker_s)
            return {
                "received": self.received_n,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "deleted": self.deleted,
                "released": self.released,
                "batches": self.batches,
                "mean_batch_size": round(self.batched / self.batches, 2) if self.batches else 0.0,
                "padding_ratio": round(self.padded_tokens / self.real_tokens, 3)
                if self.real_tokens
                else 1.0,
                "inference_s": round(self.inference_s, 3),
                "p50_in_worker_s": round(_percentile(latencies, 50), 4),
                "p95_in_worker_s": round(_percentile(latencies, 95), 4),
                "heartbeats": self.heartbeats,
                "heartbeat_failures": self.heartbeat_failures,
            }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100.0 * (len(sorted_values) - 1))))
    return float(sorted_values[index])
