"""The S3 adapter for image inputs: GetObject of one image, never more than the byte limit
read. The worker's role needs only `s3:GetObject` on the buckets of WORKER_IMAGE_S3_BUCKETS
(deploy/iam/worker-images-s3-read.json).

403/404 (and other 4xx) are final: ImageFetchFailed results. 5xx, throttling, timeouts and
connection failures are transient: the request is left for redelivery."""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.contract.images import parse_s3_uri
from worker.errors import ImageRejected, RequestDeferred
from worker.images.policy import ImageSourcePolicy
from worker.s3 import make_client

FAILED = "ImageFetchFailed"
TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)


def make_image_client(threads: int, timeout_s: float, **kwargs: Any) -> Any:
    """worker.s3's client, with a connection per fetch thread and the fetch timeouts."""
    config = Config(
        max_pool_connections=max(10, threads),
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return make_client(config=config, **kwargs)


class S3ImageFetcher:
    """`fetch("s3://bucket/key") -> bytes`, or ImageRejected / RequestDeferred."""

    def __init__(self, client: Any, policy: ImageSourcePolicy, *, max_bytes: int) -> None:
        self.client = client
        self.policy = policy
        self.max_bytes = max_bytes

    def fetch(self, uri: str) -> bytes:
        parsed = parse_s3_uri(uri)
        if parsed is None:
            raise ImageRejected(FAILED, f"not s3://bucket/key: {uri[:200]!r}")
        bucket, key = parsed
        self.policy.check_bucket(bucket)
        shown = uri[:300]
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                length = int(response.get("ContentLength") or 0)
                if length > self.max_bytes:
                    raise _too_large(shown, length, self.max_bytes)
                data: bytes = body.read(self.max_bytes + 1)
            finally:
                body.close()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "?")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            message = f"{shown}: S3 answered {status or '?'} {code}"
            if status >= 500 or code in TRANSIENT_CODES:
                raise RequestDeferred(FAILED, message) from None
            raise ImageRejected(FAILED, message) from None
        except BotoCoreError as exc:  # timeouts, connection failures, a broken stream
            raise RequestDeferred(FAILED, f"{shown}: {type(exc).__name__}: {exc}") from None
        if len(data) > self.max_bytes:
            raise _too_large(shown, len(data), self.max_bytes)
        return data


def _too_large(shown: str, size: int, limit: int) -> ImageRejected:
    return ImageRejected(
        "ImageTooLarge", f"{shown}: {size} bytes; the limit is {limit} (WORKER_IMAGE_MAX_BYTES)"
    )
