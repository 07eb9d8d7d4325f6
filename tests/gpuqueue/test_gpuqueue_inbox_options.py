"""Waiting calls share one inbox per result queue in a process, and so its reader: clients
whose reader options differ (delete_s3_objects, dedup_window) must not share it. Against moto
(SQS and S3)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from gpuqueue import Client
from worker.contract.result import build_result, result_message
from worker.contract.wire import s3_pointer_message

REGION = "us-east-1"


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def moto(moto_server: Any) -> tuple[str, Any, Any]:
    endpoint = moto_server.endpoint_url
    return (endpoint, boto3.client("sqs", endpoint_url=endpoint, region_name=REGION),
            boto3.client("s3", endpoint_url=endpoint, region_name=REGION))


def put_large_result(sqs: Any, s3: Any, queue: str, bucket: str, request_id: str) -> None:
    """A result as a worker writes one too large for SQS: the body in S3, a pointer queued."""
    message = result_message(build_result(message_id=f"m-{request_id}", request_id=request_id,
                                          model="m", outputs=[[1.0]]))
    s3.put_object(Bucket=bucket, Key=request_id, Body=message.body.encode())
    pointer = s3_pointer_message(message, bucket, request_id)
    sqs.send_message(QueueUrl=queue, MessageBody=pointer.body, MessageAttributes=pointer.attributes)


def test_a_client_keeping_s3_objects_keeps_them_after_one_deleting_them_waited(
    moto: tuple[str, Any, Any],
) -> None:
    endpoint, sqs, s3 = moto
    bucket = name("gq-big")
    s3.create_bucket(Bucket=bucket)
    inputs = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    results = sqs.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    deleting = Client(inputs, results, endpoint_url=endpoint)
    keeping = Client(inputs, results, endpoint_url=endpoint, delete_s3_objects=False)
    deleting._inbox(results)  # it waited first: the queue's inbox was made with its options
    inbox = keeping._inbox(results)
    inbox.expect(["kept"])
    put_large_result(sqs, s3, results, bucket, "kept")
    assert inbox.wait_for(["kept"], 10)["kept"].outputs == [[1.0]]
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in objects] == ["kept"]  # delete_s3_objects=False: still there
    # and the other client still deletes what it reads
    other = deleting._inbox(results)
    other.expect(["gone"])
    put_large_result(sqs, s3, results, bucket, "gone")
    assert other.wait_for(["gone"], 10)["gone"].outputs == [[1.0]]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["kept"]
