"""The one SQS adapter: everything the worker says to SQS goes through `SqsAdapter`.

Batch calls (send, delete, change visibility) can half-fail with HTTP 200: the response lists
`Failed` entries. Those are retried one by one, a bounded number of times, unless SQS says the
sender is at fault (then retrying cannot help). What still failed is returned to the caller, which
decides what it means (e.g. a result that could not be sent: leave the request for redelivery).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from worker.contract import SQS_BATCH_MAX_ENTRIES, OutgoingMessage

log = logging.getLogger(__name__)

RECEIVE_WAIT_S = 20  # the longest long poll SQS allows: fewest empty receives
RECEIVE_MAX = 10  # the most one ReceiveMessage returns
ENTRY_RETRIES = 3  # per failed batch entry, after the batch call itself


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # ApproximateReceiveCount, 1 on first delivery
    sent_timestamp_ms: int | None  # SentTimestamp: when the producer's send reached SQS
    attributes: dict[str, Any] = field(default_factory=dict)  # message attributes


@dataclass
class BatchOutcome:
    """Which entries (by the caller's index) succeeded and which failed for good, and why."""

    succeeded: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def make_client(**kwargs: Any) -> Any:
    """A boto3 SQS client from the standard chain (region, credentials incl. web identity,
    AWS_ENDPOINT_URL). Connection pool sized for the concurrent long polls plus writers."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=kwargs.pop("max_pool_connections", 32),
        read_timeout=kwargs.pop("read_timeout", RECEIVE_WAIT_S + 15),
        connect_timeout=kwargs.pop("connect_timeout", 5),
    )
    return boto3.client("sqs", config=config, **kwargs)


class SqsAdapter:
    def __init__(self, client: Any, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self._sleep = sleep
        self._calls = 0
        self._calls_lock = threading.Lock()

    @property
    def calls(self) -> int:
        """API calls made so far (batch calls and single retries), for calls-per-message."""
        return self._calls

    def _count(self) -> None:
        with self._calls_lock:
            self._calls += 1

    # ------------------------------------------------------------------ reads

    def max_message_size(self, queue_url: str) -> int:
        self._count()
        attributes = self.client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"]
        )["Attributes"]
        return int(attributes["MaximumMessageSize"])

    def queue_attributes(self, queue_url: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        self._count()
        result = self.client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(names))
        return dict(result.get("Attributes", {}))

    def queue_url(self, name: str, owner_account_id: str | None = None) -> str:
        """GetQueueUrl; the owner account lets a DLQ named by ARN be found in another account."""
        kwargs = {"QueueName": name}
        if owner_account_id:
            kwargs["QueueOwnerAWSAccountId"] = owner_account_id
        self._count()
        return str(self.client.get_queue_url(**kwargs)["QueueUrl"])

    def receive(
        self,
        queue_url: str,
        *,
        max_messages: int = RECEIVE_MAX,
        wait_s: int = RECEIVE_WAIT_S,
        visibility_timeout_s: int | None = None,
    ) -> list[ReceivedMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max(1, min(RECEIVE_MAX, max_messages)),
            "WaitTimeSeconds": wait_s,
            # asked for explicitly: the receive count drives retry back-off, the sent time the
            # queue-wait metric
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout_s
        self._count()
        response = self.client.receive_message(**kwargs)
        out = []
        for message in response.get("Messages", []):
            attrs = message.get("Attributes", {})
            sent = attrs.get("SentTimestamp")
            out.append(
                ReceivedMessage(
                    message_id=message["MessageId"],
                    receipt_handle=message["ReceiptHandle"],
                    body=message.get("Body", ""),
                    receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
                    sent_timestamp_ms=int(sent) if sent is not None else None,
                    attributes=dict(message.get("MessageAttributes", {})),
                )
            )
        return out

    # ------------------------------------------------------------------ batch writes

    def _batched(
        self,
        call: Callable[..., Any],
        queue_url: str,
        entries: Sequence[dict[str, Any]],
        single: Callable[[dict[str, Any]], None],
    ) -> BatchOutcome:
        """One batch call for up to 10 entries (Id = index), then `Failed` entries one by one."""
        if len(entries) > SQS_BATCH_MAX_ENTRIES:
            raise ValueError(f"{len(entries)} entries; SQS batches take at most 10")
        outcome = BatchOutcome()
        if not entries:
            return outcome
        batch_entries = [{"Id": str(i), **entry} for i, entry in enumerate(entries)]
        retry: dict[int, str] = {}
        try:
            self._count()
            response = call(QueueUrl=queue_url, Entries=batch_entries)
        except Exception as exc:  # the whole call failed (after botocore's own retries)
            log.warning("sqs batch call failed: %s", exc)
            retry = {i: f"{type(exc).__name__}: {exc}" for i in range(len(entries))}
        else:
            outcome.succeeded.extend(int(item["Id"]) for item in response.get("Successful", []))
            for item in response.get("Failed", []):
                index = int(item["Id"])
                reason = f"{item.get('Code', '?')}: {item.get('Message', '')}"
                if item.get("SenderFault"):
                    outcome.failed[index] = reason  # our request is wrong; retrying cannot help
                else:
                    retry[index] = reason
        for index, reason in retry.items():
            for attempt in range(ENTRY_RETRIES):
                try:
                    self._count()
                    single(entries[index])
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    self._sleep(min(2.0, 0.1 * 2**attempt))
                else:
                    outcome.succeeded.append(index)
                    break
            else:
                outcome.failed[index] = reason
        outcome.succeeded.sort()
        return outcome

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """SendMessageBatch for up to 10 messages (the caller keeps within the byte limit)."""
        entries = [_send_entry(m) for m in messages]
        return self._batched(
            self.client.send_message_batch,
            queue_url,
            entries,
            lambda e: self.client.send_message(QueueUrl=queue_url, **e),
        )

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome:
        entries = [{"ReceiptHandle": r} for r in receipt_handles]
        return self._batched(
            self.client.delete_message_batch,
            queue_url,
            entries,
            lambda e: self.client.delete_message(QueueUrl=queue_url, **e),
        )

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        """(receipt handle, new visibility timeout in seconds) pairs; 0 makes them visible now."""
        entries = [{"ReceiptHandle": r, "VisibilityTimeout": int(t)} for r, t in changes]
        return self._batched(
            self.client.change_message_visibility_batch,
            queue_url,
            entries,
            lambda e: self.client.change_message_visibility(QueueUrl=queue_url, **e),
        )


def _send_entry(message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {k: dict(v) for k, v in message.attributes.items()}
    return entry


def chunks(items: Sequence[Any], size: int = SQS_BATCH_MAX_ENTRIES) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
