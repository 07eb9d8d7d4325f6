"""boto3 clients for the scaler's AWS calls (SQS, CloudWatch, Secrets Manager), each call
bounded by SCALER_REQUEST_TIMEOUT_S. botocore's defaults (60 s to connect, 60 s to read, three
attempts) let one stalled call outlast the 55 s invocation: "Task timed out", naming nothing,
and the targets after it never served."""

from __future__ import annotations

from typing import Any

#: attempts per call, the first included: one retry for a dropped connection or a throttle
MAX_ATTEMPTS = 2


def client(service: str, timeout_s: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=min(timeout_s, 5.0),
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
    return boto3.client(service, config=config)
