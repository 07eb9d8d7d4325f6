"""Where a result goes: an SQS queue (its URL) or an SNS topic (its ARN, from a reply_to on the
allow-list), each through its own adapter, each with its size limit. The writers see one seam.

A queue's limit is its MaximumMessageSize, asked once; a topic's is SNS's fixed 256 KiB per
message and per PublishBatch call. Beyond it the same S3 claim-check applies to both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from worker import sqs_limits
from worker.contract.reply_to import is_topic
from worker.contract.wire import SNS_MAX_MESSAGE_SIZE
from worker.errors import DestinationUnreachable
from worker.logs import event
from worker.seams import BatchOutcome, OutgoingMessage, QueueSeam, TopicSeam

log = logging.getLogger("worker.pipeline")


class MessageSizes:
    """MaximumMessageSize per destination queue, asked once (a queue that cannot be asked is
    taken to have SQS's historical 256 KiB)."""

    def __init__(self, sqs: QueueSeam) -> None:
        self._sqs = sqs
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}

    def of(self, queue_url: str) -> int:
        with self._lock:
            known = self._sizes.get(queue_url)
        if known is not None:
            return known
        try:
            size = self._sqs.max_message_size(queue_url)
        except Exception as exc:
            event(
                log,
                "cannot read MaximumMessageSize; assuming 256 KiB",
                logging.WARNING,
                queue_url=queue_url,
                error=str(exc)[:300],
            )
            size = sqs_limits.HISTORICAL_MAX_MESSAGE_SIZE
        with self._lock:
            self._sizes[queue_url] = size
        return size


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

    def send_batch(self, destination: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        if not is_topic(destination):
            return self._sqs.send_batch(destination, messages)
        if self._topics is None:  # the worker checks at start; a test may build it without
            raise DestinationUnreachable(destination, "NoSnsClient")
        return self._topics.publish_batch(destination, messages)
