"""What submit_many refuses to encode, against fauxqs: a lone surrogate in a parameter's key
(pydantic writes it as U+FFFD without a word: the worker got another key) fails before anything
is sent, naming the field, as an InvalidRequest (a ValueError) carrying the request's index."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from gpuqueue import Client, InvalidRequest

REGION = "us-east-1"


def test_a_lone_surrogate_in_a_key_is_refused_naming_the_field(fauxqs_server: Any) -> None:
    endpoint = fauxqs_server.endpoint_url
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    queue = sqs.create_queue(QueueName=f"gq-in-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    client = Client(queue, endpoint_url=endpoint)
    with pytest.raises(InvalidRequest, match=r"request 1 .*parameters \(a key\): a lone surrogate"):
        client.submit_many(["fine", {"inputs": "x", "parameters": {"stop\ud800": ["."]}}])
    with pytest.raises(InvalidRequest) as refused:
        client.submit_many(["fine", "also fine", {"inputs": ["ok", "lone \udcff"]}])
    assert (refused.value.index, refused.value.reason.split(":")[0]) == (2, "inputs.1")
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"  # nothing sent
