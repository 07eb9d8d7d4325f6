"""The SQS adapter: one GetQueueAttributes call per queue, the three approximate counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class QueueError(RuntimeError):
    """Names the queue and what SQS said."""


@dataclass(frozen=True)
class QueueSnapshot:
    visible: int
    in_flight: int
    delayed: int


class SqsQueues:
    """Reads backlogs with plain boto3 (AWS_ENDPOINT_URL honoured by botocore itself)."""

    def __init__(self, client: Any | None = None, timeout_s: float = 10.0) -> None:
        if client is None:
            from scaler import aws

            client = aws.client("sqs", timeout_s)
        self._sqs = client

    def snapshot(self, queue_url: str) -> QueueSnapshot:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=list(ATTRIBUTES)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                raise QueueError(f"SQS queue {queue_url} does not exist") from None
            raise QueueError(f"SQS GetQueueAttributes {queue_url} failed: {code}: {exc}") from None
        except BotoCoreError as exc:
            raise QueueError(f"SQS GetQueueAttributes {queue_url} failed: {exc}") from None
        attrs = resp.get("Attributes") or {}
        # a count left out is unknown, not 0: read as 0 it scaled a busy queue's workers down
        missing = [name for name in ATTRIBUTES if name not in attrs]
        if missing:
            raise QueueError(f"SQS {queue_url} answered without {', '.join(missing)}")
        try:
            return QueueSnapshot(
                visible=int(attrs[ATTRIBUTES[0]]),
                in_flight=int(attrs[ATTRIBUTES[1]]),
                delayed=int(attrs[ATTRIBUTES[2]]),
            )
        except (TypeError, ValueError) as exc:
            raise QueueError(f"SQS {queue_url} returned non-numeric counts: {exc}") from None


def summed(snapshots: list[QueueSnapshot]) -> QueueSnapshot:
    """Several queues' counts as one backlog (a Deployment reading them all)."""
    return QueueSnapshot(
        visible=sum(s.visible for s in snapshots),
        in_flight=sum(s.in_flight for s in snapshots),
        delayed=sum(s.delayed for s in snapshots),
    )


def queue_name(queue_url: str) -> str:
    """The QueueName dimension CloudWatch uses: the last path segment of the URL."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]
