"""The chaos tooling itself: each fault the proxy injects reaches boto3 the way SQS's would.

If the proxy silently passed calls through, every SQS-fault figure would be meaningless; these
checks use plain boto3 (retries off where the raw answer matters) against fauxqs through it.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from chaos.support.faultproxy import FaultPlan, FaultProxy

NO_RETRY = Config(retries={"mode": "standard", "max_attempts": 1})


@pytest.fixture
def proxy(fauxqs_server: Any) -> Any:
    p = FaultProxy(fauxqs_server.endpoint_url, FaultPlan(enabled=False), seed=1).start()
    yield p
    p.stop()


@pytest.mark.chaos_smoke
def test_proxy_injects_each_fault(proxy: FaultProxy, fauxqs_server: Any) -> None:
    direct = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)
    url = direct.create_queue(QueueName="chaos-proxy-selftest")["QueueUrl"]
    client = boto3.client("sqs", endpoint_url=proxy.endpoint_url, config=NO_RETRY)

    def count() -> int:
        attrs = direct.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    proxy.plan = FaultPlan(throttle=1.0)
    with pytest.raises(ClientError) as throttled:
        client.get_queue_url(QueueName="chaos-proxy-selftest")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"

    proxy.plan = FaultPlan(http503=1.0)
    with pytest.raises(ClientError) as unavailable:
        client.get_queue_url(QueueName="chaos-proxy-selftest")
    assert unavailable.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    proxy.plan = FaultPlan(reset_before=1.0, operations=frozenset({"SendMessage"}))
    with pytest.raises(ConnectionClosedError):
        client.send_message(QueueUrl=url, MessageBody="never applied")
    assert count() == 0

    proxy.plan = FaultPlan(reset_after=1.0, operations=frozenset({"SendMessage"}))
    with pytest.raises(ConnectionClosedError):
        client.send_message(QueueUrl=url, MessageBody="applied, answer lost")
    # Applied although the client saw an error (urllib3 may resend once on the dropped
    # keep-alive connection, applying it twice: exactly the duplicate a lost answer causes).
    applied = count()
    assert applied in (1, 2)

    proxy.plan = FaultPlan(partial=1.0, partial_fraction=0.3)
    resp = client.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)]
    )
    failed = {f["Id"] for f in resp["Failed"]}
    assert len(failed) == 3 and len(resp["Successful"]) == 7
    assert all(not f["SenderFault"] for f in resp["Failed"])
    assert count() == applied + 7  # the Failed entries were really not sent

    # With botocore's retries on, a throttle/5xx storm is absorbed (the call succeeds).
    proxy.plan = FaultPlan(throttle=0.3, http500=0.2, delay=0.5, delay_s=(0.0, 0.01))
    retrying = boto3.client(
        "sqs", endpoint_url=proxy.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 10}),
    )
    for _ in range(20):
        retrying.get_queue_url(QueueName="chaos-proxy-selftest")
    summary = proxy.stats.fault_summary()
    assert summary["throttle"] > 1 and summary["http500"] > 0 and summary["delay"] > 0
