"""How calls reach SQS: its JSON protocol over keep-alive http.client connections (one per
thread), signed with `worker.sqs_signing`.

The worker's hot path (receive, send, delete, change visibility: three calls per ten messages)
went through boto3's full client machinery (event hooks, parameter validation, serialisers,
retry handlers). Measured side by side against fauxqs (bench/pipeline_overhead.py prints it), a
call made here costs a fraction of the same boto3 call's CPU. What boto3 is good at stays
boto3's: the region, the endpoint (AWS_ENDPOINT_URL included), the CA bundle and the
credentials, web identity and their refresh, come from a boto3 session. HTTPS goes through an
HTTPS_PROXY (CONNECT) when one is set and the host is not in NO_PROXY. The read timeout bounds
the whole answer (from the request's send), not each read.

Errors and retries follow botocore's standard mode: connection errors (resets, refusals,
timeouts), HTTP 500/502/503/504 and throttling codes are retried with truncated exponential
back-off and full jitter (base 50 ms; 1 s for throttling), up to `max_attempts`. The error code
is the `x-amzn-query-error` header's when SQS sends one (its awsQueryCompatible trait:
`AWS.SimpleQueueService.NonExistentQueue`, as boto3 reports it), else the `__type` of the body.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import boto3
import orjson

from worker.errors import WorkerError
from worker.http_deadline import DeadlineAnswers
from worker.sqs_signing import Signer, host_header

log = logging.getLogger(__name__)

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
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) SQS endpoint: {endpoint_url!r}")
        if parts.path not in ("", "/") or parts.query:
            # every call is POST / and signed so: a gateway's prefix would be dropped unseen
            raise ValueError(
                f"an SQS endpoint with a path is not supported: {endpoint_url!r} "
                "(scheme://host[:port] only)"
            )
        self.endpoint_url = endpoint_url
        self.region = region
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = host_header(endpoint_url)
        self._credentials = credentials
        self._signer = Signer(region)
        self._read_timeout_s = read_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._ssl = ssl.create_default_context(cafile=ca_bundle) if self._https else None
        self._proxy = _https_proxy(self._host) if self._https else None
        self._local = threading.local()  # http.client connections are not thread-safe

    @classmethod
    def from_session(
        cls, session: boto3.Session | None = None, **options: Any
    ) -> SignedJsonTransport:
        """Region, endpoint, CA bundle and credentials as boto3 resolves them
        (botocore.exceptions.NoRegionError without a region). `endpoint_url` / `region_name`
        override."""
        from botocore.httpsession import get_cert_path

        session = session or boto3.Session()
        resolver = session.client(
            "sqs",
            endpoint_url=options.pop("endpoint_url", None),
            region_name=options.pop("region_name", None),
        )
        credentials = session.get_credentials()
        if credentials is None:
            raise SqsApiError("NoCredentials", "no AWS credentials in the standard chain")
        bundle = session._session.get_config_variable("ca_bundle") or get_cert_path(True)
        return cls(
            endpoint_url=resolver.meta.endpoint_url,
            region=resolver.meta.region_name,
            credentials=credentials,
            ca_bundle=bundle,
            **options,
        )

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self._max_attempts):
            try:
                return self._once(operation, params)
            except SqsApiError as exc:
                if attempt + 1 >= self._max_attempts or not _retryable(exc):
                    raise
                # said, because a retried write that had landed is a duplicate downstream
                log.info("sqs %s retried (attempt %d): %s", operation, attempt + 2, exc.code)
                base = 1.0 if exc.code in THROTTLING_CODES else 0.05
                self._sleep(random.random() * min(base * 2**attempt, MAX_BACKOFF_S))
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = orjson.dumps(params)
        headers = self._signer.headers(
            self._host_header,
            f"AmazonSQS.{operation}",
            body,
            self._credentials.get_frozen_credentials(),
        )
        # the awsQueryCompatible error codes (x-amzn-query-error), as botocore asks for them
        headers["x-amzn-query-mode"] = "true"
        connection = self._connection()
        # the last answer's reads left the socket's timeout at what remained of its deadline
        assert connection.sock is not None
        connection.sock.settimeout(self._read_timeout_s)
        connection.deadline = time.monotonic() + self._read_timeout_s  # the whole answer's
        try:
            connection.request("POST", "/", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:  # reset, refused, timed out
            connection.close()
            self._local.connection = None
            raise SqsApiError("ConnectionError", f"{type(exc).__name__}: {exc}") from exc
        if response.will_close:
            connection.close()
            self._local.connection = None
        if response.status == 200:
            return orjson.loads(data) if data else {}
        raise _error(response.status, response.getheader("x-amzn-query-error"), data)

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        target = self._proxy.address if self._proxy else (self._host, self._port)
        if self._https:
            connection = _HTTPSConnection(
                *target, timeout=self._connect_timeout_s, context=self._ssl
            )
            if self._proxy is not None:
                connection.set_tunnel(self._host, self._port, headers=self._proxy.headers)
        else:
            connection = _HTTPConnection(*target, timeout=self._connect_timeout_s)
        try:
            connection.connect()
        except OSError as exc:
            raise SqsApiError("ConnectionError", f"{type(exc).__name__}: {exc}") from exc
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sock.settimeout(self._read_timeout_s)
        self._local.connection = connection
        return connection


class _OneWrite:
    """Headers and body in one write: http.client sends them apart, and every write is a trip
    through the kernel (and, on loopback, a wake-up of the server) that a small request need not
    pay twice."""

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        connection: Any = self  # an http.client connection (this is its mixin)
        if not isinstance(message_body, bytes) or encode_chunked:
            super()._send_output(message_body, encode_chunked)  # type: ignore[misc]
            return
        connection._buffer.extend((b"", b""))
        head = b"\r\n".join(connection._buffer)
        del connection._buffer[:]
        connection.send(head + message_body)


class _HTTPConnection(DeadlineAnswers, _OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(DeadlineAnswers, _OneWrite, http.client.HTTPSConnection):
    pass


_Connection = _HTTPConnection | _HTTPSConnection


@dataclass(frozen=True)
class _Proxy:
    address: tuple[str, int]
    headers: dict[str, str]  # for its CONNECT: Proxy-Authorization when the URL has user:pass


def _https_proxy(host: str) -> _Proxy | None:
    """The HTTPS_PROXY to tunnel through, unless NO_PROXY names `host`, read as boto3 reads it:
    the port by the scheme's default when none is given, the URL's user:pass as Basic
    Proxy-Authorization (botocore's own helper; dropping it made every call a 407)."""
    from botocore.httpsession import ProxyConfiguration

    proxy = urllib.request.getproxies_environment().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    url = proxy if "://" in proxy else f"http://{proxy}"
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    headers = ProxyConfiguration().proxy_headers_for(url)
    return _Proxy((parts.hostname or "", port), dict(headers))


def _error(status: int, query_error: str | None, body: bytes) -> SqsApiError:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if query_error:
        code = query_error.split(";", 1)[0]
    else:
        code = str(data.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
    message = str(data.get("message") or data.get("Message") or "")
    return SqsApiError(code, message, status)


def _retryable(exc: SqsApiError) -> bool:
    return (
        exc.code == "ConnectionError"
        or exc.status in TRANSIENT_STATUS
        or exc.code in TRANSIENT_CODES
        or exc.code in THROTTLING_CODES
    )
