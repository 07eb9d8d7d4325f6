"""boto3 clients for the scaler's AWS calls (SQS, CloudWatch, Secrets Manager), each call
bounded by SCALER_REQUEST_TIMEOUT_S. botocore's defaults (60 s to connect, 60 s to read, three
attempts) let one stalled call outlast the 55 s invocation: "Task timed out", naming nothing,
and the targets after it never served."""

from __future__ import annotations

from typing import Any

#: attempts per call, the first included: one retry for a dropped connection or a throttle
MAX_ATTEMPTS = 2


def client(service: str, timeout_s: float) -> Any:
    """The client; an environment boto3 cannot make one from is a ConfigError naming the
    variable (not botocore's traceback at start)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

    from scaler.config import ConfigError

    config = Config(
        connect_timeout=min(timeout_s, 5.0),
        read_timeout=timeout_s,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
    try:
        return boto3.client(service, config=config)
    except NoRegionError:
        raise ConfigError(
            f"AWS_REGION: not set (nor AWS_DEFAULT_REGION, nor a profile's region): the {service} "
            "client needs one"
        ) from None
    except ProfileNotFound as exc:
        raise ConfigError(f"AWS_PROFILE: {exc}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"the AWS environment: {exc}") from None
