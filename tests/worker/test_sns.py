"""The SNS adapter's handling of a PublishBatch whose entries failed (an SNS brown-out, which no
local server produces on demand: the boto3 client is swapped for one that answers so)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from worker.seams import OutgoingMessage
from worker.sns import SnsAdapter

TOPIC = "arn:aws:sns:us-east-1:123456789012:results"


class BrownOut:
    """Every PublishBatch entry fails server side; each Publish fails with `single` after
    `single_s` seconds of the test's clock."""

    def __init__(self, clock: list[float], single: Exception, single_s: float) -> None:
        self.clock, self.single, self.single_s = clock, single, single_s
        self.publishes = 0

    def publish_batch(self, **call: Any) -> Any:
        failed = [{"Id": e["Id"], "Code": "InternalError", "Message": "x", "SenderFault": False}
                  for e in call["PublishBatchRequestEntries"]]
        return {"Successful": [], "Failed": failed}

    def publish(self, **_: Any) -> Any:
        self.publishes += 1
        self.clock[0] += self.single_s
        raise self.single


class Throttled(Exception):
    pass


@pytest.mark.parametrize(
    ("single", "single_s", "most"),
    [
        (EndpointConnectionError(endpoint_url="https://sns"), 5.0, 1),
        (Throttled("slow down"), 3.0, 4),
    ],
)
def test_single_retries_stop_at_an_unreachable_endpoint_or_the_budget(
    single: Exception, single_s: float, most: int
) -> None:
    """Each failed entry was retried alone three times, one after the other, whatever the
    endpoint did: a writer held for minutes. As for SQS: an unreachable endpoint ends the
    retries, and they share one budget (ENTRY_RETRY_BUDGET_S)."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    adapter = SnsAdapter(sleep=sleep, clock=lambda: clock[0])
    client = BrownOut(clock, single, single_s)
    adapter._clients["us-east-1"] = client
    outcome = adapter.publish_batch(TOPIC, [OutgoingMessage(f"m{i}") for i in range(10)])
    assert sorted(outcome.failed) == list(range(10)) and not outcome.succeeded
    assert client.publishes <= most, client.publishes
