"""Where a result goes: an SQS queue (its URL) or an SNS topic (its ARN, from a reply_to on the
allow-list), each through its own adapter, each with its size limit. The writers see one seam.

A queue's limit is its MaximumMessageSize, asked once (a failed read is asked again after a
minute); a topic's is SNS's fixed 256 KiB per message and per PublishBatch call. Beyond it the
same S3 claim-check applies to both.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

from worker import sqs_limits
from worker.contract.reply_to import is_topic
from worker.contract.wire import SNS_MAX_MESSAGE_SIZE
from worker.errors import DestinationUnreachable
from worker.logs import event
from worker.seams import BatchOutcome, OutgoingMessage, QueueSeam, TopicSeam

log = logging.getLogger("worker.pipeline")


class MessageSizes:
    """MaximumMessageSize per destination queue, asked once. A queue that cannot be asked is
    taken to have SQS's historical 256 KiB, and asked again after RETRY_S: a read that failed
    once (throttled at start, a moment's outage) must not cap that queue's results for the
    worker's life (results over 256 KiB would be final ResultTooLarge errors). A queue whose
    policy never allows the read (a producer's reply_to that grants SendMessage only) costs one
    call a minute, and is logged once."""

    RETRY_S = 60.0

    def __init__(self, sqs: QueueSeam, clock: Callable[[], float] = time.monotonic) -> None:
        self._sqs = sqs
        self._clock = clock
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._assumed: dict[str, float] = {}  # queue -> when to ask again

    def of(self, queue_url: str) -> int:
        with self._lock:
            known = self._sizes.get(queue_url)
            retry_at = self._assumed.get(queue_url)
        if known is not None:
            return known
        if retry_at is not None and self._clock() < retry_at:
            return sqs_limits.HISTORICAL_MAX_MESSAGE_SIZE
        try:
            size = self._sqs.max_message_size(queue_url)
        except Exception as exc:
            if retry_at is None:
                event(
                    log,
                    "cannot read MaximumMessageSize; assuming 256 KiB, asking again each minute",
                    logging.WARNING,
                    queue_url=queue_url,
                    error=str(exc)[:300],
                )
            with self._lock:
                self._assumed[queue_url] = self._clock() + self.RETRY_S
            return sqs_limits.HISTORICAL_MAX_MESSAGE_SIZE
        with self._lock:
            self._sizes[queue_url] = size
            self._assumed.pop(queue_url, None)
        return size

    def told(self, queue_url: str, size: int) -> None:
        """The queue's limit, as a send it refused named it."""
        with self._lock:
            self._sizes[queue_url] = size
            self._assumed.pop(queue_url, None)


# SQS's refusal of a message over a queue's MaximumMessageSize ("InvalidParameterValue: One or
# more parameters are invalid. Reason: Message must be shorter than 1024 bytes.")
_TOO_LONG = re.compile(r"shorter than (\d+) bytes")


class Destinations:
    def __init__(self, sqs: QueueSeam, topics: TopicSeam | None = None) -> None:
        self._sqs = sqs
        self._topics = topics
        self.sizes = MessageSizes(sqs)

    def limit(self, destination: str) -> int:
        """Bytes one message (and one batch call) may carry there."""
        if is_topic(destination):
            return SNS_MAX_MESSAGE_SIZE
        return self.sizes.of(destination)

    def smaller_limit(self, destination: str, reason: str, limit: int) -> int | None:
        """The queue's real limit when `reason` is SQS refusing a message as over it and it is
        below `limit`, else None. A queue whose MaximumMessageSize cannot be read (a reply_to
        granting SendMessage only) is taken to have 256 KiB: a result over its real, smaller
        limit was refused, released and run again to the DLQ, never put in S3."""
        found = _TOO_LONG.search(reason)
        if found is None or is_topic(destination) or int(found.group(1)) >= limit:
            return None
        size = int(found.group(1))
        event(log, "a queue refused a message as too large: its limit learned", logging.WARNING,
              queue_url=destination, limit=size)
        self.sizes.told(destination, size)
        return size

    def send_batch(self, destination: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        if not is_topic(destination):
            return self._sqs.send_batch(destination, messages)
        if self._topics is None:  # the worker checks at start; a test may build it without
            raise DestinationUnreachable(destination, "NoSnsClient")
        return self._topics.publish_batch(destination, messages)
