"""The URL adapter: GET one image over HTTP(S), with no way through it to what the worker's
network can reach but the callers' cannot (SSRF).

The host is resolved once (within the fetch's deadline), every address it resolves to is checked
against the policy, and the connection goes to the checked address (the name is not resolved
again by the HTTP library: no DNS rebinding between check and connect); TLS still verifies the
certificate against the host name (SNI). Redirects are followed by hand, at most MAX_REDIRECTS,
each hop checked like the first. No proxy, no cookies, no credentials.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urljoin

from worker.contract.images import redacted_url
from worker.errors import ImageRejected, RequestDeferred
from worker.http_deadline import DeadlineAnswers
from worker.images.policy import ImageSourcePolicy, Target

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 256 * 1024
FAILED = "ImageFetchFailed"

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _PinnedHTTP(DeadlineAnswers, http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(DeadlineAnswers, http.client.HTTPSConnection):
    def __init__(
        self, target: Target, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


class HttpImageFetcher:
    """`fetch(url) -> bytes`, or ImageRejected (final) / RequestDeferred (transient)."""

    def __init__(
        self,
        policy: ImageSourcePolicy,
        *,
        max_bytes: int,
        timeout_s: float,
        resolver: Resolver = resolve,
        resolver_threads: int = 4,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._resolve = resolver
        # getaddrinfo takes no timeout (the system resolver's retries can last 30 s): lookups
        # run here and are waited for until the fetch's deadline. A lookup still hung then
        # keeps its thread until the resolver gives up; with every thread hung, later fetches
        # wait in this pool's queue and time out the same way (deferred, not stalled).
        self._lookups = concurrent.futures.ThreadPoolExecutor(
            max_workers=resolver_threads, thread_name_prefix="image-dns"
        )
        self._tls = tls or ssl.create_default_context()

    def fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            target = self.policy.check_url(url)
            addresses = self._addresses(target, deadline)
            address = self.policy.pick_address(target.host, addresses)
            location = self._get(url, target, address, deadline)
            if isinstance(location, bytes):
                return location
            url = urljoin(url, location)
        raise ImageRejected(FAILED, f"more than {MAX_REDIRECTS} redirects")

    def _addresses(self, target: Target, deadline: float) -> list[str]:
        lookup = self._lookups.submit(self._resolve, target.host, target.port)
        try:
            return lookup.result(timeout=max(deadline - time.monotonic(), 0.0))
        except concurrent.futures.TimeoutError:
            lookup.cancel()
            raise RequestDeferred(
                FAILED, f"{target.host}: cannot resolve within the fetch's {self.timeout_s} s "
                "(WORKER_IMAGE_FETCH_TIMEOUT_S)",
            ) from None
        except UnicodeError as exc:  # the name itself: the same at every redelivery
            raise ImageRejected(FAILED, f"{target.host}: cannot resolve: {exc}") from None
        except OSError as exc:
            raise RequestDeferred(FAILED, f"{target.host}: cannot resolve: {exc}") from None

    def _connection(
        self, target: Target, address: str, timeout_s: float
    ) -> _PinnedHTTP | _PinnedHTTPS:
        if target.scheme == "https":
            return _PinnedHTTPS(target, address, timeout_s, self._tls)
        return _PinnedHTTP(target, address, timeout_s)

    def _get(self, url: str, target: Target, address: str, deadline: float) -> bytes | str:
        """The body, or the Location of a redirect."""
        shown = redacted_url(url)  # a presigned URL's signature and token stay out of the logs
        left = deadline - time.monotonic()
        if left <= 0:  # the redirects before took it all
            raise RequestDeferred(FAILED, f"{shown}: timed out")
        connection = self._connection(target, address, left)
        # the whole answer, status line and headers included, within the fetch's deadline: a
        # server dripping one header line at a time held a fetch thread for minutes
        connection.deadline = deadline
        try:
            connection.request(
                "GET", target.path,
                headers={"User-Agent": "gpuqueue-worker", "Accept": "image/*"},
            )
            response = connection.getresponse()
            status = response.status
            if status in REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise ImageRejected(FAILED, f"{shown}: redirect {status} without a Location")
                return location
            if status >= 500 or status == 429:
                raise RequestDeferred(FAILED, f"{shown}: the server answered {status}")
            if status != 200:
                raise ImageRejected(FAILED, f"{shown}: the server answered {status}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise _too_large(shown, int(declared), self.max_bytes)
            return self._read(response, shown, deadline)
        except ssl.SSLCertVerificationError as exc:
            raise ImageRejected(FAILED, f"{shown}: TLS certificate refused: {exc}") from None
        except (http.client.InvalidURL, UnicodeError) as exc:  # the URL: final, not transient
            raise ImageRejected(
                FAILED, f"{shown}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        except TimeoutError:
            raise RequestDeferred(FAILED, f"{shown}: timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RequestDeferred(
                FAILED, f"{shown}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        finally:
            connection.close()

    def _read(
        self,
        response: http.client.HTTPResponse,
        shown: str,
        deadline: float,
    ) -> bytes:
        """The body, within the fetch's deadline: each read takes what has arrived (`read1`)
        and may wait only the time left, so a server that sends a byte at a time cannot hold
        the fetch past WORKER_IMAGE_FETCH_TIMEOUT_S (each full-chunk read got a fresh one)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestDeferred(FAILED, f"{shown}: timed out reading the body")
            chunk = response.read1(CHUNK)  # waits at most `left` (DeadlineAnswers)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(shown, size, self.max_bytes, at_least=True)
            chunks.append(chunk)


def _too_large(shown: str, size: int, limit: int, at_least: bool = False) -> ImageRejected:
    over = "over " if at_least else ""
    return ImageRejected(
        "ImageTooLarge",
        f"{shown}: {over}{size} bytes; the limit is {limit} (WORKER_IMAGE_MAX_BYTES)",
    )
