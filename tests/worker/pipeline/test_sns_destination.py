"""Results published to an SNS topic a request's reply_to names (on the allow-list): read back
through a topic -> SQS subscription on the real local servers (fauxqs and moto both serve SNS),
with the dedup attributes, the S3 claim-check beyond SNS's 256 KiB, and a topic that does not
exist answered ReplyToUnreachable on the result queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from worker_test_helpers import (
    REGION,
    FakeRunner,
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    start_worker,
    unique,
    wait_for,
)

from worker.config import WorkerSettings
from worker.errors import ConfigError
from worker.pipeline import Worker
from worker.s3 import ClaimCheckStore
from worker.seams import Encoded
from worker.sns import SnsAdapter
from worker.sqs import SqsAdapter

BIG = 300_000  # characters: over SNS's 256 KiB, under S3's


class BigRunner(FakeRunner):
    """The text "big" gets a 300 kB output; anything else FakeRunner's token counts."""

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        encoded = super().encode(texts, parameters)
        return Encoded([[-2]]) if texts == ["big"] else encoded

    def run(self, prepared: list[Encoded]) -> list[Any]:
        out = super().run(prepared)
        pairs = zip(prepared, out, strict=True)
        return [["x" * BIG] if e.token_ids == [[-2]] else o for e, o in pairs]


def subscribed_topic(endpoint: str, sqs_client: Any) -> tuple[str, str]:
    """A topic with a raw-delivery SQS subscription: (topic ARN, the subscribed queue URL)."""
    sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION)
    topic = sns.create_topic(Name=unique("gq-done"))["TopicArn"]
    queue = sqs_client.create_queue(QueueName=unique("gq-sub"))["QueueUrl"]
    arn = sqs_client.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return topic, queue


def test_results_are_published_to_an_allowed_topic_with_the_claim_check_beyond_256k(
    sqs_server: Any, sqs_client: Any, s3_client: Any, moto_server: Any,
    running_workers: list[Worker],
) -> None:
    queues = make_queues(sqs_client)
    topic, subscribed = subscribed_topic(sqs_server.endpoint_url, sqs_client)
    missing = topic.rsplit(":", 1)[0] + ":" + unique("gq-done-missing")
    bucket = unique("gq-results")
    s3_client.create_bucket(Bucket=bucket)
    [small_id, big_id, lost_id] = send_bodies(
        sqs_client,
        queues.input,
        [
            request("to the topic", id="small", reply_to=topic),
            request("big", id="big", reply_to=topic),
            request("nobody there", id="lost", reply_to=missing),
        ],
    )
    sqs = SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    settings = WorkerSettings(
        queue_url=queues.input, result_queue_url=queues.results, receivers=2, http_port=0,
        max_wait_ms=5, receive_wait_s=1, reply_to_allow="arn:aws:sns:*:*:gq-done-*",
    )
    worker = Worker(
        settings, BigRunner(), sqs, region=REGION,
        claim_check=ClaimCheckStore(s3_client, bucket, "big/"),
        topics=SnsAdapter(endpoint_url=sqs_server.endpoint_url),
    )
    running_workers.append(worker)
    worker.start()

    reader = ResultReader(sqs_client, subscribed, s3_client)
    published = reader.wait_for(2, timeout=60)
    assert set(published) == {small_id, big_id}  # keyed by the gpuqueue-message-id attribute
    assert published[small_id]["outputs"] == [3] and published[small_id]["id"] == "small"
    assert published[big_id]["outputs"] == ["x" * BIG]
    assert reader.pointers == 1  # the big one came as the Extended Client's S3 pointer
    errors = ResultReader(sqs_client, queues.results).wait_for(1, timeout=30)
    assert errors[lost_id]["error"]["type"] == "ReplyToUnreachable"
    assert "NotFound" in errors[lost_id]["error"]["message"]
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "every request deleted")
    assert counts(sqs_client, queues.dlq) == (0, 0)


def test_a_topic_allow_list_without_an_sns_client_fails_at_start(
    fauxqs_server: Any, running_workers: list[Worker]
) -> None:
    client = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url, region_name=REGION)
    queues = make_queues(client)
    with pytest.raises(ConfigError, match="WORKER_REPLY_TO_ALLOW"):
        start_worker(
            fauxqs_server.endpoint_url, queues, FakeRunner(), running_workers,
            reply_to_allow="arn:aws:sns:*:*:gq-done-*",
        )
