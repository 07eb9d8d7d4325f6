"""The one SQS adapter: everything the worker says to SQS goes through `SqsAdapter` (it
implements `worker.seams.QueueSeam`), over `worker.sqs_transport` (SQS's JSON protocol, signed;
region, endpoint and credentials from boto3's standard chain).

Three transports, on purpose: long polls hold a connection for up to 20 s and need a read
timeout above that; visibility changes (heartbeats) must fail fast, so a hung endpoint turns
into a counted, logged failure within seconds instead of stalling heartbeats behind a 35 s read
timeout and its retries; sends and deletes get a longer read timeout than heartbeats, because a
send that timed out may still have landed, and resending it is a duplicate result (a slow
server, not a dead one, is the common case there).

Batch calls (send, delete, change visibility) can half-fail with HTTP 200: the response lists
`Failed` entries. Those are retried one by one, a bounded number of times, unless SQS says the
sender is at fault (then retrying cannot help). A whole call that fails (after the transport's
own retries) fails every entry: retrying each alone would multiply the wait on a hung endpoint.
A queue that does not exist or refuses this worker raises `DestinationUnreachable`: retrying the
request cannot help, and the caller decides what that means (for a reply_to: an error result).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from worker.contract.wire import ATTR_MESSAGE_ID
from worker.errors import QUEUE_UNREACHABLE_CODES, DestinationUnreachable, error_code
from worker.seams import BatchOutcome, OutgoingMessage, ReceivedMessage
from worker.sqs_limits import BATCH_MAX_ENTRIES, RECEIVE_MAX_MESSAGES, RECEIVE_MAX_WAIT_S
from worker.sqs_transport import SignedJsonTransport, SqsTransport

log = logging.getLogger(__name__)

ENTRY_RETRIES = 3  # per failed batch entry, after the batch call itself
#: other regions' adapters kept at most (reply_to queues across regions): far more than any
#: deployment writes to, and a bound on what requests naming regions can make the worker hold
MAX_REGIONS = 16
#: all the single retries of one batch call's failed entries, in seconds. A heartbeat works
#: through its chunks of ten in order: ten entries x 3 retries x the transport's attempts once
#: held it for 7.5 minutes while every other held message's visibility ran out.
ENTRY_RETRY_BUDGET_S = 10.0
# A queue that is gone, or that refuses this worker (its policy, or its KMS key): permanent.
PERMANENT_CODES = QUEUE_UNREACHABLE_CODES
# Visibility changes and queue reads: short timeouts, few attempts (worst case about 20 s).
CONTROL = {"read_timeout_s": 5.0, "connect_timeout_s": 2.0, "max_attempts": 3}
# Sends and deletes: a timed-out send may have landed (a retry duplicates it), so wait longer.
WRITE = {"read_timeout_s": 15.0, "connect_timeout_s": 2.0, "max_attempts": 3}
# a queue URL on AWS's public SQS host: its region
_AWS_QUEUE_URL = re.compile(r"^https://sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
LONG_POLL = {
    "read_timeout_s": RECEIVE_MAX_WAIT_S + 15.0,
    "connect_timeout_s": 5.0,
    "max_attempts": 5,
}


def make_client(**kwargs: Any) -> Any:
    """A plain boto3 SQS client from the standard chain (tests and tools; the worker itself
    speaks through `SqsAdapter`)."""
    return boto3.client("sqs", **kwargs)


class SqsAdapter:
    """`poll` serves ReceiveMessage, `write` sends and deletes, `control` every other call (see
    the module doc); the last two default to `control`."""

    def __init__(
        self,
        control: SqsTransport,
        poll: SqsTransport | None = None,
        write: SqsTransport | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        regional: Callable[[str], SqsAdapter] | None = None,
    ) -> None:
        self.control = control
        self.poll = poll if poll is not None else control
        self.write = write if write is not None else control
        self._sleep = sleep
        self._clock = clock
        self._calls = 0
        self._calls_lock = threading.Lock()
        # region -> the adapter for a queue there (a reply_to in another region): SQS refuses a
        # queue URL of another region ("InvalidAddress"); None: everything goes to this endpoint
        self._regional = regional
        self._regions: dict[str, SqsAdapter] = {}
        self._making_lock = threading.Lock()

    @classmethod
    def from_environment(
        cls, session: boto3.Session | None = None, **overrides: Any
    ) -> SqsAdapter:
        """The three transports from boto3's standard chain (botocore.exceptions.NoRegionError
        without a region); `endpoint_url` / `region_name` override it."""
        session = session or boto3.Session()
        control = SignedJsonTransport.from_session(session, **overrides, **CONTROL)
        regional = None
        if _AWS_QUEUE_URL.match(control.endpoint_url.rstrip("/") + "/"):
            # on AWS's public endpoint: a queue of another region through that region's
            # (an emulator or a VPC endpoint serves its one region: reply_to refuses others)
            def regional(region: str) -> SqsAdapter:
                return SqsAdapter.from_environment(
                    session, **{**overrides, "region_name": region, "endpoint_url": None}
                )
        return cls(
            control,
            SignedJsonTransport.from_session(session, **overrides, **LONG_POLL),
            SignedJsonTransport.from_session(session, **overrides, **WRITE),
            regional=regional,
        )

    def for_queue(self, queue_url: str) -> SqsAdapter:
        """The adapter that can reach `queue_url`: this one, or for a queue on AWS's public
        host in another region, one for that region (made once)."""
        if self._regional is None:
            return self
        match = _AWS_QUEUE_URL.match(queue_url)
        if match is None or match["region"] == self.region:
            return self
        region = match["region"]
        with self._calls_lock:
            adapter = self._regions.get(region)
        if adapter is not None:
            return adapter
        # one made at a time: boto3 sessions are not safe to make clients from in two threads
        # at once (and two writers meeting a new region would make two)
        with self._making_lock:
            with self._calls_lock:
                adapter = self._regions.get(region)
                full = len(self._regions) >= MAX_REGIONS
            if adapter is None:
                if full:  # each region's clients are kept for good: bounded
                    raise DestinationUnreachable(queue_url, f"more than {MAX_REGIONS} regions")
                try:
                    adapter = self._regional(region)
                except ValueError as exc:  # botocore's InvalidRegionError
                    raise DestinationUnreachable(queue_url, f"InvalidRegion: {exc}") from None
                with self._calls_lock:
                    self._regions[region] = adapter
        return adapter

    @property
    def calls(self) -> int:
        """API calls made so far (batch calls and single retries), for calls-per-message."""
        with self._calls_lock:
            others = list(self._regions.values())
        return self._calls + sum(adapter.calls for adapter in others)

    def _call(self, transport: SqsTransport, operation: str, **params: Any) -> dict[str, Any]:
        with self._calls_lock:
            self._calls += 1
        return transport.call(operation, params)

    @property
    def region(self) -> str:
        return str(getattr(self.control, "region", ""))

    # ------------------------------------------------------------------ reads

    def max_message_size(self, queue_url: str) -> int:
        return int(self.queue_attributes(queue_url, ["MaximumMessageSize"])["MaximumMessageSize"])

    def queue_attributes(self, queue_url: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        if (there := self.for_queue(queue_url)) is not self:
            return there.queue_attributes(queue_url, names)
        result = self._call(
            self.control, "GetQueueAttributes", QueueUrl=queue_url, AttributeNames=list(names)
        )
        return dict(result.get("Attributes", {}))

    def queue_url(self, name: str, owner_account_id: str | None = None) -> str:
        """GetQueueUrl; the owner account lets a DLQ named by ARN be found in another account."""
        params: dict[str, Any] = {"QueueName": name}
        if owner_account_id:
            params["QueueOwnerAWSAccountId"] = owner_account_id
        return str(self._call(self.control, "GetQueueUrl", **params)["QueueUrl"])

    def receive(
        self,
        queue_url: str,
        *,
        max_messages: int = RECEIVE_MAX_MESSAGES,
        wait_s: int = RECEIVE_MAX_WAIT_S,
        visibility_timeout_s: int | None = None,
    ) -> list[ReceivedMessage]:
        params: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max(1, min(RECEIVE_MAX_MESSAGES, max_messages)),
            "WaitTimeSeconds": wait_s,
            # asked for explicitly: the receive count drives retry back-off, the sent time the
            # queue-wait metric
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            params["VisibilityTimeout"] = visibility_timeout_s
        response = self._call(self.poll, "ReceiveMessage", **params)
        return [_received(queue_url, m) for m in response.get("Messages", ())]

    # ------------------------------------------------------------------ batch writes

    def _batched(
        self,
        transport: SqsTransport,
        operation: str,
        single: str,
        queue_url: str,
        entries: Sequence[dict[str, Any]],
    ) -> BatchOutcome:
        """One batch call for up to 10 entries (Id = index), then `Failed` entries one by one."""
        if len(entries) > BATCH_MAX_ENTRIES:
            raise ValueError(f"{len(entries)} entries; SQS batches take at most 10")
        outcome = BatchOutcome()
        if not entries:
            return outcome
        try:
            response = self._call(
                transport,
                operation,
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), **e} for i, e in enumerate(entries)],
            )
        except Exception as exc:  # the whole call failed, after the transport's own retries
            code = error_code(exc)
            if code in PERMANENT_CODES:
                raise DestinationUnreachable(queue_url, code) from exc
            log.warning("sqs batch call failed: %s", exc)
            outcome.failed = {i: str(exc)[:500] for i in range(len(entries))}
            return outcome
        outcome.succeeded.extend(int(item["Id"]) for item in response.get("Successful", ()))
        retries = RetryBudget(self._clock() + ENTRY_RETRY_BUDGET_S)
        for item in response.get("Failed", ()):
            index = int(item["Id"])
            reason = f"{item.get('Code', '?')}: {item.get('Message', '')}"
            if item.get("SenderFault"):
                outcome.failed[index] = reason  # our request is wrong; retrying cannot help
            elif self._retry_alone(transport, single, queue_url, entries[index], retries):
                outcome.succeeded.append(index)
            else:
                outcome.failed[index] = reason
        outcome.succeeded.sort()
        return outcome

    def _retry_alone(
        self,
        transport: SqsTransport,
        operation: str,
        queue_url: str,
        entry: dict[str, Any],
        retries: RetryBudget,
    ) -> bool:
        """One failed entry on its own, within what is left of the batch's retry budget; an
        endpoint that cannot be reached ends the retries of every entry after it too."""
        for attempt in range(ENTRY_RETRIES):
            if retries.spent(self._clock()):
                return False
            try:
                self._call(transport, operation, QueueUrl=queue_url, **entry)
                return True
            except Exception as exc:
                code = error_code(exc)
                log.debug("sqs single retry failed: %s", code)
                if code == "ConnectionError":
                    retries.over = True
                    return False
                self._sleep(min(2.0, 0.1 * 2**attempt))
        return False

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """SendMessageBatch for up to 10 messages (the caller keeps within the byte limit)."""
        if (there := self.for_queue(queue_url)) is not self:
            return there.send_batch(queue_url, messages)
        fifo = queue_url.endswith(".fifo")
        entries = [_send_entry(m, fifo) for m in messages]
        return self._batched(self.write, "SendMessageBatch", "SendMessage", queue_url, entries)

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome:
        entries = [{"ReceiptHandle": r} for r in receipt_handles]
        return self._batched(
            self.write, "DeleteMessageBatch", "DeleteMessage", queue_url, entries
        )

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        """(receipt handle, new visibility timeout in seconds) pairs; 0 makes them visible now."""
        entries = [{"ReceiptHandle": r, "VisibilityTimeout": int(t)} for r, t in changes]
        return self._batched(
            self.control,
            "ChangeMessageVisibilityBatch",
            "ChangeMessageVisibility",
            queue_url,
            entries,
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


def _send_entry(message: OutgoingMessage, fifo: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {k: dict(v) for k, v in message.attributes.items()}
    if fifo:
        entry["MessageGroupId"] = entry["MessageDeduplicationId"] = fifo_key(message)
    return entry


# what SQS takes in a FIFO message's group and deduplication ids: 1-128 of these
_FIFO_ID = re.compile(r"^[A-Za-z0-9!-/:-@\[-`{-~]{1,128}$")


def fifo_key(message: OutgoingMessage) -> str:
    """A FIFO queue's MessageGroupId and MessageDeduplicationId for a result: the request's SQS
    message id (its `gpuqueue-message-id`), so a result sent twice within SQS's five-minute
    window (a send whose answer was lost, then redelivered) is dropped by SQS itself, and each
    result is its own group (no result waits behind another's). Without them a FIFO reply_to
    refused every send (MissingParameter) and the request went to the DLQ unanswered."""
    key = message.attributes.get(ATTR_MESSAGE_ID, {}).get("StringValue", "")
    if _FIFO_ID.match(key):
        return key
    return hashlib.sha256((key or message.body).encode("utf-8")).hexdigest()


def chunks(items: Sequence[Any], size: int = BATCH_MAX_ENTRIES) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class RetryBudget:
    """One batch call's budget for retrying its failed entries alone (SQS's and SNS's)."""

    deadline: float
    over: bool = False  # the endpoint could not be reached: no further entry is tried

    def spent(self, now: float) -> bool:
        return self.over or now >= self.deadline
