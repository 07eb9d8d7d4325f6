"""The one SQS adapter: everything the worker says to SQS goes through `SqsAdapter` (it
implements `worker.seams.QueueSeam`).

Two boto3 clients, on purpose: long polls hold a connection for up to 20 s and need a read
timeout above that, while writes and visibility changes must fail fast, so a hung endpoint turns
into a counted, logged failure within seconds instead of stalling heartbeats behind a 35 s read
timeout and its retries.

Batch calls (send, delete, change visibility) can half-fail with HTTP 200: the response lists
`Failed` entries. Those are retried one by one, a bounded number of times, unless SQS says the
sender is at fault (then retrying cannot help). A whole call that fails (after botocore's own
retries) fails every entry: retrying each alone would multiply the wait on a hung endpoint. A
queue that does not exist or refuses this worker raises `DestinationUnreachable`: retrying the
request cannot help, and the caller decides what that means (for a reply_to: an error result).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.config import Config

from worker.errors import DestinationUnreachable, error_code
from worker.seams import BatchOutcome, OutgoingMessage, ReceivedMessage
from worker.sqs_limits import BATCH_MAX_ENTRIES, RECEIVE_MAX_MESSAGES, RECEIVE_MAX_WAIT_S

log = logging.getLogger(__name__)

ENTRY_RETRIES = 3  # per failed batch entry, after the batch call itself
# A queue that is gone, or that refuses this worker (its policy, or its KMS key): permanent.
PERMANENT_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.NotFoundException",
    }
)
# Writes and visibility changes: short timeouts, few attempts (worst case about 20 s).
CONTROL_READ_TIMEOUT_S = 5
CONTROL_CONNECT_TIMEOUT_S = 2
CONTROL_MAX_ATTEMPTS = 3


def make_client(*, long_poll: bool = True, **kwargs: Any) -> Any:
    """A boto3 SQS client from the standard chain (region, credentials incl. web identity,
    AWS_ENDPOINT_URL). `long_poll`: a read timeout above the 20 s long poll; otherwise the
    control client's short timeouts. Connection pool sized for the concurrent threads."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5 if long_poll else CONTROL_MAX_ATTEMPTS},
        max_pool_connections=kwargs.pop("max_pool_connections", 32),
        read_timeout=RECEIVE_MAX_WAIT_S + 15 if long_poll else CONTROL_READ_TIMEOUT_S,
        connect_timeout=5 if long_poll else CONTROL_CONNECT_TIMEOUT_S,
    )
    return boto3.client("sqs", config=config, **kwargs)


class SqsAdapter:
    """`poll_client` serves ReceiveMessage; `client` everything else (see the module doc)."""

    def __init__(
        self,
        client: Any,
        poll_client: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.poll_client = poll_client if poll_client is not None else client
        self._sleep = sleep
        self._calls = 0
        self._calls_lock = threading.Lock()

    @classmethod
    def from_environment(cls, **kwargs: Any) -> SqsAdapter:
        """Both clients from boto3's standard chain (botocore.exceptions.NoRegionError without a
        region)."""
        return cls(make_client(long_poll=False, **kwargs), make_client(long_poll=True, **kwargs))

    @property
    def calls(self) -> int:
        """API calls made so far (batch calls and single retries), for calls-per-message."""
        return self._calls

    def _count(self) -> None:
        with self._calls_lock:
            self._calls += 1

    # ------------------------------------------------------------------ reads

    def max_message_size(self, queue_url: str) -> int:
        return int(self.queue_attributes(queue_url, ["MaximumMessageSize"])["MaximumMessageSize"])

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
        max_messages: int = RECEIVE_MAX_MESSAGES,
        wait_s: int = RECEIVE_MAX_WAIT_S,
        visibility_timeout_s: int | None = None,
    ) -> list[ReceivedMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max(1, min(RECEIVE_MAX_MESSAGES, max_messages)),
            "WaitTimeSeconds": wait_s,
            # asked for explicitly: the receive count drives retry back-off, the sent time the
            # queue-wait metric
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout_s
        self._count()
        response = self.poll_client.receive_message(**kwargs)
        return [_received(queue_url, m) for m in response.get("Messages", ())]

    # ------------------------------------------------------------------ batch writes

    def _batched(
        self,
        call: Callable[..., Any],
        queue_url: str,
        entries: Sequence[dict[str, Any]],
        single: Callable[[dict[str, Any]], None],
    ) -> BatchOutcome:
        """One batch call for up to 10 entries (Id = index), then `Failed` entries one by one."""
        if len(entries) > BATCH_MAX_ENTRIES:
            raise ValueError(f"{len(entries)} entries; SQS batches take at most 10")
        outcome = BatchOutcome()
        if not entries:
            return outcome
        try:
            self._count()
            response = call(
                QueueUrl=queue_url, Entries=[{"Id": str(i), **e} for i, e in enumerate(entries)]
            )
        except Exception as exc:  # the whole call failed, after botocore's own retries
            code = error_code(exc)
            if code in PERMANENT_CODES:
                raise DestinationUnreachable(queue_url, code) from exc
            log.warning("sqs batch call failed: %s: %s", code, exc)
            outcome.failed = {i: f"{code}: {exc}" for i in range(len(entries))}
            return outcome
        outcome.succeeded.extend(int(item["Id"]) for item in response.get("Successful", ()))
        for item in response.get("Failed", ()):
            index = int(item["Id"])
            reason = f"{item.get('Code', '?')}: {item.get('Message', '')}"
            if item.get("SenderFault"):
                outcome.failed[index] = reason  # our request is wrong; retrying cannot help
            elif self._retry_alone(single, entries[index]):
                outcome.succeeded.append(index)
            else:
                outcome.failed[index] = reason
        outcome.succeeded.sort()
        return outcome

    def _retry_alone(self, single: Callable[[dict[str, Any]], None], entry: dict[str, Any]) -> bool:
        for attempt in range(ENTRY_RETRIES):
            try:
                self._count()
                single(entry)
                return True
            except Exception as exc:
                log.debug("sqs single retry failed: %s", error_code(exc))
                self._sleep(min(2.0, 0.1 * 2**attempt))
        return False

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """SendMessageBatch for up to 10 messages (the caller keeps within the byte limit)."""
        return self._batched(
            self.client.send_message_batch,
            queue_url,
            [_send_entry(m) for m in messages],
            lambda e: self.client.send_message(QueueUrl=queue_url, **e),
        )

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome:
        return self._batched(
            self.client.delete_message_batch,
            queue_url,
            [{"ReceiptHandle": r} for r in receipt_handles],
            lambda e: self.client.delete_message(QueueUrl=queue_url, **e),
        )

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        """(receipt handle, new visibility timeout in seconds) pairs; 0 makes them visible now."""
        return self._batched(
            self.client.change_message_visibility_batch,
            queue_url,
            [{"ReceiptHandle": r, "VisibilityTimeout": int(t)} for r, t in changes],
            lambda e: self.client.change_message_visibility(QueueUrl=queue_url, **e),
        )


def _received(queue_url: str, message: dict[str, Any]) -> ReceivedMessage:
    attrs = message.get("Attributes", {})
    sent = attrs.get("SentTimestamp")
    return ReceivedMessage(
        queue_url=queue_url,
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message.get("Body", ""),
        receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
        sent_timestamp_ms=int(sent) if sent is not None else None,
        attributes=dict(message.get("MessageAttributes", {})),
    )


def _send_entry(message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {k: dict(v) for k, v in message.attributes.items()}
    return entry


def chunks(items: Sequence[Any], size: int = BATCH_MAX_ENTRIES) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
