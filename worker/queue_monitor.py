"""Queue depth for Prometheus: one thread that, every WORKER_QUEUE_METRICS_INTERVAL_S, reads the
approximate message counts of the input queue and of its dead-letter queue (found from the input
queue's RedrivePolicy) and sets `gpuqueue_queue_messages{queue, state}`; it also publishes
`gpuqueue_oldest_message_age_seconds` from what the receivers saw during the interval.

Why an age from receives: GetQueueAttributes has no age attribute. SQS's own
ApproximateAgeOfOldestMessage exists only as a CloudWatch metric (cloudwatch:GetMetricData, a
minute or more behind). What a worker does know exactly is each message's SentTimestamp when it
receives it, so the gauge is the largest (receive time - SentTimestamp) over the messages this
worker received in the last interval, 0 when it received none. Consequences: a backlog that
nobody receives (no replica running, receivers stopped) does not raise it; the
GpuqueueWorkerNotReady / GpuqueueBacklogNotConsumed rules and the CloudWatch alarms (which work
with zero workers) cover that case.

Every replica reads the same queue-wide numbers: Rules and panels take max() across pods, never
sum(). The cost is two or three SQS calls per interval per replica. A failed read is one JSON log
line and `gpuqueue_queue_metrics_errors_total{queue}`; the gauges keep their last values (a
throttled read must not resolve a "DLQ not empty" alert), and the thread never stops the worker.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.logs import event
from worker.metrics import Metrics
from worker.sqs import SqsAdapter

log = logging.getLogger("worker.queue_monitor")

# gauge label "state" -> the GetQueueAttributes attribute that counts it
STATE_ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


@dataclass(frozen=True)
class QueueArn:
    region: str
    account_id: str
    name: str


def parse_queue_arn(arn: str) -> QueueArn:
    """arn:PARTITION:sqs:REGION:ACCOUNT:NAME (ValueError for anything else)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    return QueueArn(region=parts[3], account_id=parts[4], name=parts[5])


def dead_letter_arn(attributes: Mapping[str, str]) -> str | None:
    """The DLQ's ARN from a queue's RedrivePolicy attribute; None when the queue has none."""
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return None
    try:
        target = json.loads(policy).get("deadLetterTargetArn")
    except (ValueError, AttributeError):
        raise ValueError(f"unreadable RedrivePolicy: {policy!r}") from None
    return str(target) if target else None


def message_counts(attributes: Mapping[str, str]) -> dict[str, int]:
    """{"visible": n, "in_flight": n, "delayed": n}; a count the server did not return is left
    out (better absent than a made-up 0)."""
    return {
        state: int(attributes[name])
        for state, name in STATE_ATTRIBUTES.items()
        if name in attributes
    }


def _error_text(exc: BaseException) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"


class QueueMonitor:
    """`poll_once()` is one round; `start()` runs rounds on a daemon thread until `stop()`."""

    def __init__(
        self,
        sqs: SqsAdapter,
        queue_url: str,
        metrics: Metrics,
        interval_s: float,
        labels: tuple[str, str] = ("input", "dlq"),
        publishes_age: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0 (0 disables the monitor: do not start it)")
        self.sqs = sqs
        self.queue_url = queue_url
        self.metrics = metrics
        self.interval_s = interval_s
        self.labels = labels  # the `queue` label values of this queue and of its DLQ
        # the oldest-message age is the worker's, over all its queues: one monitor takes it
        # (each round empties the window; a second monitor would set the gauge to 0 at once)
        self.publishes_age = publishes_age
        self.dlq_url: str | None = None
        self._dlq_arn: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # completed rounds (tests wait on it)

    def start(self) -> QueueMonitor:
        self._thread = threading.Thread(
            target=self._loop, name="gpuqueue-queue-monitor", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # a bug here must not take the worker down
                event(log, "queue monitor error", logging.ERROR, error=_error_text(exc))
            self._stop.wait(self.interval_s)

    def poll_once(self) -> None:
        if self.publishes_age:
            age = self.metrics.take_oldest_received_age()
            self.metrics.oldest_message_age_seconds.set(age if age is not None else 0.0)
        names = [*STATE_ATTRIBUTES.values(), "RedrivePolicy"]
        try:
            attributes = self.sqs.queue_attributes(self.queue_url, names)
            dlq_arn = dead_letter_arn(attributes)
        except Exception as exc:
            self._failed(self.labels[0], self.queue_url, exc)
        else:
            self._export(self.labels[0], attributes)
            self._poll_dlq(dlq_arn)
        self.rounds += 1

    def _poll_dlq(self, arn: str | None) -> None:
        if arn is None:  # no redrive policy (or it was removed): no DLQ series
            self.dlq_url = self._dlq_arn = None
            for state in STATE_ATTRIBUTES:
                self.metrics.queue_messages.remove(self.labels[1], state)
            return
        try:
            if arn != self._dlq_arn or self.dlq_url is None:
                # the DLQ must be in the input queue's region (an SQS rule), so the same client
                # finds it; its account may differ, hence QueueOwnerAWSAccountId
                target = parse_queue_arn(arn)
                self.dlq_url = self.sqs.queue_url(target.name, target.account_id)
                self._dlq_arn = arn
            attributes = self.sqs.queue_attributes(self.dlq_url, list(STATE_ATTRIBUTES.values()))
        except Exception as exc:
            self._failed(self.labels[1], self.dlq_url or arn, exc)
            self.dlq_url = None  # resolve again next round (the queue may have been recreated)
        else:
            self._export(self.labels[1], attributes)

    def _export(self, queue: str, attributes: Mapping[str, Any]) -> None:
        for state, count in message_counts(attributes).items():
            self.metrics.queue_messages.labels(queue=queue, state=state).set(count)

    def _failed(self, queue: str, where: str, exc: BaseException) -> None:
        self.metrics.queue_metrics_errors.labels(queue=queue).inc()
        event(
            log,
            "queue metrics read failed",
            logging.WARNING,
            queue=queue,
            queue_ref=where,
            error=_error_text(exc),
        )
