"""The S3 adapter: writes results too large for the result queue (the claim-check), in the layout
the AWS SQS Extended Client reads (`contract.s3_pointer_message` builds the pointer)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from botocore.config import Config


def make_client(config: Config | None = None, **kwargs: Any) -> Any:
    """A boto3 S3 client from the standard chain (AWS_ENDPOINT_URL honoured); `config` is
    merged over the defaults (standard retries, 5 attempts)."""
    base = Config(retries={"mode": "standard", "max_attempts": 5})
    return boto3.client("s3", config=base.merge(config) if config else base, **kwargs)


class ClaimCheckStore:
    """Puts payloads under `s3://bucket/prefix<uuid>.json` and says where."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def put(self, body: str) -> tuple[str, str]:
        key = f"{self.prefix}{uuid.uuid4()}.json"
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/json"
        )
        return self.bucket, key

    def get(self, bucket: str, key: str) -> str:
        """Read a payload back (what a consumer does; used by the demo and tests)."""
        response = self.client.get_object(Bucket=bucket, Key=key)
        return str(response["Body"].read().decode("utf-8"))
