"""A destination queue's size limit (pure unit tests: the seam is a plain object; the adapter's
GetQueueAttributes runs against fauxqs in tests/worker/test_sqs.py)."""

from __future__ import annotations

from worker_test_helpers import Clock

from worker.pipeline.destinations import MessageSizes

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/results"


class FlakyAttributes:
    """GetQueueAttributes fails (throttled, a moment's outage) until `healthy`."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    def max_message_size(self, queue_url: str) -> int:
        self.calls += 1
        if not self.healthy:
            raise ConnectionError("endpoint unreachable")
        return 1_048_576


def test_a_size_read_that_failed_is_asked_again_later() -> None:
    """One failed read at start capped the queue at 256 KiB for the worker's life: a 1 MiB
    queue's results over 256 KiB became final ResultTooLarge errors (with no S3 set)."""
    sqs, clock = FlakyAttributes(), Clock()
    sizes = MessageSizes(sqs, clock)
    assert sizes.of(QUEUE) == 262_144
    sqs.healthy = True
    clock.now = 30.0
    assert sizes.of(QUEUE) == 262_144 and sqs.calls == 1  # not a call per result meanwhile
    clock.now = 61.0
    assert sizes.of(QUEUE) == 1_048_576
    clock.now = 1_000.0
    assert sizes.of(QUEUE) == 1_048_576 and sqs.calls == 2  # known: asked once
