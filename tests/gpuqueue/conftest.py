"""Fixtures of the `gpuqueue` command's tests."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

REGION = "us-east-1"


@pytest.fixture
def fauxqs(fauxqs_server: Any) -> tuple[str, Any]:
    """fauxqs's endpoint, and a boto3 SQS client on it."""
    endpoint = fauxqs_server.endpoint_url
    return endpoint, boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
