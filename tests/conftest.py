"""Session-wide fixtures: real local servers on loopback, started once per test session.

Tests talk to these through plain boto3 with AWS_ENDPOINT_URL-style endpoints, exactly as users do.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import settings as hypothesis_settings

from worker.devsqs import LocalServer, start_fauxqs, start_moto

REGION = "us-east-1"

# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) runs every property test on examples derived from the
# test itself, not a random seed: a red CI always means the same examples fail, and a green one
# cannot turn red on a rerun of the same commit. Local runs keep drawing new examples (and the
# examples database keeps what they find), which is where new counterexamples come from.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if profile := os.environ.get("HYPOTHESIS_PROFILE"):
    hypothesis_settings.load_profile(profile)


@pytest.fixture(scope="session", autouse=True)
def aws_test_env() -> Iterator[None]:
    """Dummy credentials and a region, so nothing can reach a real AWS account from a test."""
    saved = {k: os.environ.get(k) for k in _AWS_VARS}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        os.environ.pop(key, None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)


@pytest.fixture(scope="session")
def fauxqs_server(aws_test_env: None) -> Iterator[LocalServer]:
    server = start_fauxqs()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(aws_test_env: None) -> Iterator[LocalServer]:
    """moto's server: S3, STS, Secrets Manager, CloudWatch, and SQS for small queues."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["fauxqs", "moto"])
def sqs_server(request: pytest.FixtureRequest) -> LocalServer:
    """Each SQS integration test runs against both emulators, so one's quirk cannot hide a bug."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqs_client(sqs_server: LocalServer):  # type: ignore[no-untyped-def]
    return boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=REGION)


@pytest.fixture
def s3_client(moto_server: LocalServer):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name=REGION)
