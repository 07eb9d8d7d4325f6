"""How calls reach SQS: its JSON protocol over urllib3, signed with botocore's SigV4 signer.

The worker's hot path (receive, send, delete, change visibility: three calls per ten messages)
went through boto3's full client machinery (event hooks, parameter validation, serialisers,
retry handlers): measured side by side against fauxqs, a signed call made here costs about half
the CPU of the same boto3 call (bench/pipeline_overhead.py prints both). What boto3 is good at
stays boto3's: the region, the endpoint (AWS_ENDPOINT_URL included) and the credentials, web
identity and their refresh, come from a boto3 session.

Errors and retries follow botocore's standard mode: connection errors, HTTP 500/502/503/504 and
throttling codes are retried with truncated exponential back-off and full jitter (base 50 ms;
1 s for throttling), up to `max_attempts`. The error code is the `x-amzn-query-error` header's
when SQS sends one (its awsQueryCompatible trait: `AWS.SimpleQueueService.NonExistentQueue`,
as boto3 reports it), else the `__type` of the JSON body.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import boto3
import orjson
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from worker.errors import WorkerError

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalError"})
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "AWS.SimpleQueueService.RequestThrottled",
        "LimitExceededException",
        "SlowDown",
    }
)
MAX_BACKOFF_S = 20.0


class SqsApiError(WorkerError):
    """SQS answered with an error (or could not be reached): `code` is AWS's error code."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(f"{code}: {message}" if message else code)


class SqsTransport(Protocol):
    """One SQS API call: the operation's name and its parameters as boto3 names them."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


class SignedJsonTransport:
    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        credentials: Any,
        read_timeout_s: float,
        connect_timeout_s: float,
        max_attempts: int,
        pool_size: int = 32,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/") + "/"
        self.region = region
        self._credentials = credentials
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._pool = urllib3.PoolManager(
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
        )

    @classmethod
    def from_session(
        cls, session: boto3.Session | None = None, **options: Any
    ) -> SignedJsonTransport:
        """Region, endpoint and credentials as boto3 resolves them (botocore.exceptions.
        NoRegionError without a region). `endpoint_url` / `region_name` override."""
        session = session or boto3.Session()
        resolver = session.client(
            "sqs",
            endpoint_url=options.pop("endpoint_url", None),
            region_name=options.pop("region_name", None),
        )
        credentials = session.get_credentials()
        if credentials is None:
            raise SqsApiError("NoCredentials", "no AWS credentials in the standard chain")
        return cls(
            endpoint_url=resolver.meta.endpoint_url,
            region=resolver.meta.region_name,
            credentials=credentials,
            **options,
        )

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self._max_attempts):
            try:
                return self._once(operation, params)
            except SqsApiError as exc:
                if attempt + 1 >= self._max_attempts or not _retryable(exc):
                    raise
                base = 1.0 if exc.code in THROTTLING_CODES else 0.05
                self._sleep(random.random() * min(base * 2**attempt, MAX_BACKOFF_S))
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(params)
        request = AWSRequest(
            method="POST",
            url=self.endpoint_url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"AmazonSQS.{operation}",
                "x-amzn-query-mode": "true",
            },
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), "sqs", self.region).add_auth(
            request
        )
        try:
            response = self._pool.request(
                "POST", self.endpoint_url, body=body, headers=dict(request.headers.items())
            )
        except urllib3.exceptions.HTTPError as exc:  # reset, refused, timed out
            raise SqsApiError("ConnectionError", f"{type(exc).__name__}: {exc}") from exc
        if response.status == 200:
            return orjson.loads(response.data) if response.data else {}
        raise _error(response)


def _error(response: Any) -> SqsApiError:
    try:
        data = orjson.loads(response.data) if response.data else {}
    except orjson.JSONDecodeError:
        data = {}
    query_error = response.headers.get("x-amzn-query-error")
    if query_error:
        code = query_error.split(";", 1)[0]
    else:
        code = str(data.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{response.status}"
    message = str(data.get("message") or data.get("Message") or "")
    return SqsApiError(code, message, response.status)


def _retryable(exc: SqsApiError) -> bool:
    return (
        exc.code == "ConnectionError"
        or exc.status in TRANSIENT_STATUS
        or exc.code in TRANSIENT_CODES
        or exc.code in THROTTLING_CODES
    )
