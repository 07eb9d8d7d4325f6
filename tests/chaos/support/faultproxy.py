"""A fault-injecting HTTP proxy on loopback between the worker and the local SQS server.

The worker's boto3 client is pointed at this proxy through AWS_ENDPOINT_URL; the proxy forwards
to fauxqs/moto and, on a configurable share of calls, misbehaves the way SQS does in production:

* ``throttle``   HTTP 400 ``ThrottlingException`` with header
                 ``x-amzn-query-error: ThrottlingException;Sender``: SQS speaks the JSON protocol
                 with the awsQueryCompatible trait, so botocore reads the error code from that
                 header, and both its legacy and standard retry modes retry it
* ``http500`` / ``http503``  an InternalFailure / ServiceUnavailable answer (retried by botocore)
* ``reset_before`` the TCP connection is reset before the request reaches SQS (nothing applied)
* ``reset_after``  SQS applies the request, then the connection is reset: the client never learns
                 of it (a received message stays invisible until its visibility times out; a sent
                 result may be written twice)
* ``delay``      the call is held ``delay_s`` before it is forwarded
* ``partial``    a batch call (SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch)
                 is forwarded with only some of its entries; the rest come back HTTP 200 in
                 ``Failed`` (SenderFault false, ``InternalError``) and were NOT applied

The proxy counts every call and every fault by operation, so a test can report what it injected
and check that retries stay bounded. Faults can be switched off at run time (``plan.enabled``) to
measure recovery.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

BATCH_OPERATIONS = frozenset(
    {"SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"}
)
# Headers that belong to one hop; everything else is passed through unchanged.
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host",
     "content-length"}
)


@dataclass
class FaultPlan:
    """Probabilities per call (each drawn independently, in the order listed)."""

    throttle: float = 0.0
    http500: float = 0.0
    http503: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    delay: float = 0.0
    delay_s: tuple[float, float] = (0.05, 0.5)
    partial: float = 0.0
    # Share of a half-failed batch's entries reported as Failed (at least one entry always fails).
    partial_fraction: float = 0.4
    # Fault only these operations (None = all). A receive reset loses messages until visibility
    # expiry: tests choose deliberately whether ReceiveMessage takes part.
    operations: frozenset[str] | None = None
    # Answer every call with 503 (an outage), to check that retries back off.
    outage: bool = False
    enabled: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in {
                "throttle": self.throttle,
                "http500": self.http500,
                "http503": self.http503,
                "reset_before": self.reset_before,
                "reset_after": self.reset_after,
                "delay": self.delay,
                "partial": self.partial,
            }.items()
            if v
        }


@dataclass
class ProxyStats:
    calls: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    # (monotonic time, operation) of every call, to compute call rates over a window.
    timeline: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_call(self, operation: str) -> None:
        with self.lock:
            self.calls[operation] += 1
            self.timeline.append((time.monotonic(), operation))

    def count_fault(self, kind: str, operation: str, n: int = 1) -> None:
        with self.lock:
            self.faults[kind] += n
            self.faults[f"{kind}:{operation}"] += n

    def calls_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t, _ in self.timeline if start <= t < end)

    def calls_by_operation_between(self, start: float, end: float) -> dict[str, int]:
        with self.lock:
            return dict(Counter(op for t, op in self.timeline if start <= t < end))

    def total_calls(self) -> int:
        with self.lock:
            return sum(self.calls.values())

    def fault_summary(self) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in sorted(self.faults.items()) if ":" not in k}

    def faulted_share(self) -> float:
        """Share of calls that met at least one fault (delays included)."""
        with self.lock:
            total = sum(self.calls.values())
            return self.faults["any"] / total if total else 0.0


class _Reset(Exception):
    """Raised inside the handler to drop the client connection with a TCP RST."""


class _Outage(Exception):
    """An outage began while the call waited upstream (a long poll): answer 503."""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and client disconnects are the point of this server, not errors


class FaultProxy:
    """Threaded reverse proxy: ``start()``, point clients at ``endpoint_url``, ``stop()``."""

    def __init__(self, upstream_url: str, plan: FaultPlan | None = None, seed: int = 0) -> None:
        parts = urlsplit(upstream_url)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan = plan or FaultPlan()
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._local = threading.local()
        self._active: set[http.client.HTTPConnection] = set()
        self._active_lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def begin_outage(self) -> None:
        """Every call fails with 503 from now on, long polls already waiting upstream included."""
        self.plan = FaultPlan(outage=True)
        with self._active_lock:
            active = list(self._active)
        for conn in active:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

    # -- fault decisions --------------------------------------------------------------------
    def _draw(self, p: float) -> bool:
        if p <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < p

    def _uniform(self, lo: float, hi: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(lo, hi)

    def _sample(self, items: list[Any], k: int) -> list[Any]:
        with self._rng_lock:
            return self._rng.sample(items, k)

    # -- upstream ---------------------------------------------------------------------------
    def _upstream(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Long polls last up to 20 s; allow for that plus slack.
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
            self._local.conn = conn
        return conn

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            conn = self._upstream()
            with self._active_lock:
                self._active.add(conn)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if self.plan.enabled and self.plan.outage:
                    raise _Outage from None
                # A kept-alive upstream connection may have been closed by the server: reconnect
                # once (the request never reached it, so this adds no fault of our own).
                if attempt:
                    raise
            finally:
                with self._active_lock:
                    self._active.discard(conn)
        raise AssertionError("unreachable")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests report counters instead

            def do_GET(self) -> None:
                self._proxy(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._proxy(self.rfile.read(length) if length else b"")

            def _reset(self) -> None:
                # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                raise _Reset

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, type_: str, query_code: str, message: str) -> None:
                body = json.dumps({"__type": type_, "message": message}).encode()
                self._reply(
                    status,
                    [
                        ("Content-Type", "application/x-amz-json-1.0"),
                        ("x-amzn-RequestId", "chaos-injected"),
                        ("x-amzn-query-error", query_code),
                    ],
                    body,
                )

            def _proxy(self, body: bytes) -> None:
                try:
                    self._handle(body)
                except _Reset:
                    pass
                except _Outage:
                    proxy.stats.count_fault("outage", "in_flight")
                    self._error(
                        503, "ServiceUnavailable", "ServiceUnavailable;Receiver", "chaos: outage"
                    )
                except (ConnectionError, OSError):
                    self.close_connection = True

            def _handle(self, body: bytes) -> None:
                target = self.headers.get("X-Amz-Target", "")
                # JSON protocol: "AmazonSQS.ReceiveMessage"; query protocol: Action=... in the body
                operation = target.rsplit(".", 1)[-1] if target else _query_action(body)
                stats, plan = proxy.stats, proxy.plan
                stats.count_call(operation)
                active = plan.enabled and (plan.operations is None or operation in plan.operations)
                if plan.enabled and plan.outage:
                    stats.count_fault("outage", operation)
                    stats.count_fault("any", operation)
                    self._error(
                        503, "ServiceUnavailable", "ServiceUnavailable;Receiver", "chaos: outage"
                    )
                    return
                faulted = False
                if active and proxy._draw(plan.delay):
                    stats.count_fault("delay", operation)
                    faulted = True
                    time.sleep(proxy._uniform(*plan.delay_s))
                if active and proxy._draw(plan.throttle):
                    stats.count_fault("throttle", operation)
                    stats.count_fault("any", operation)
                    self._error(
                        400,
                        "com.amazon.coral.availability#ThrottlingException",
                        "ThrottlingException;Sender",
                        "Rate exceeded",
                    )
                    return
                if active and proxy._draw(plan.http500):
                    stats.count_fault("http500", operation)
                    stats.count_fault("any", operation)
                    self._error(500, "InternalFailure", "InternalFailure;Receiver", "chaos: 500")
                    return
                if active and proxy._draw(plan.http503):
                    stats.count_fault("http503", operation)
                    stats.count_fault("any", operation)
                    self._error(
                        503, "ServiceUnavailable", "ServiceUnavailable;Receiver", "chaos: 503"
                    )
                    return
                if active and proxy._draw(plan.reset_before):
                    stats.count_fault("reset_before", operation)
                    stats.count_fault("any", operation)
                    self._reset()
                failed: list[dict[str, Any]] = []
                if (
                    active
                    and operation in BATCH_OPERATIONS
                    and target
                    and proxy._draw(plan.partial)
                ):
                    body, failed = proxy._split_batch(body)
                    if failed:
                        stats.count_fault("partial", operation)
                        stats.count_fault("partial_entries", operation, len(failed))
                        faulted = True
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS
                }
                if failed and not json.loads(body).get("Entries"):
                    status, resp_headers, data = (
                        200,
                        [("Content-Type", "application/x-amz-json-1.0")],
                        b'{"Successful": []}',
                    )
                else:
                    status, resp_headers, data = proxy.forward(
                        self.command, self.path, headers, body
                    )
                if active and proxy._draw(plan.reset_after):
                    stats.count_fault("reset_after", operation)
                    stats.count_fault("any", operation)
                    self._reset()
                if failed and status == 200:
                    parsed = json.loads(data or b"{}")
                    parsed["Failed"] = [*parsed.get("Failed", []), *failed]
                    parsed.setdefault("Successful", [])
                    data = json.dumps(parsed).encode()
                if faulted:
                    stats.count_fault("any", operation)
                self._reply(status, resp_headers, data)

        return Handler

    def _split_batch(self, body: bytes) -> tuple[bytes, list[dict[str, Any]]]:
        request = json.loads(body)
        entries = request.get("Entries") or []
        if not entries:
            return body, []
        n_fail = max(1, round(len(entries) * self.plan.partial_fraction))
        failing = {e["Id"] for e in self._sample(entries, min(n_fail, len(entries)))}
        request["Entries"] = [e for e in entries if e["Id"] not in failing]
        failed = [
            {
                "Id": entry_id,
                "SenderFault": False,
                "Code": "InternalError",
                "Message": "chaos: injected partial batch failure",
            }
            for entry_id in sorted(failing)
        ]
        return json.dumps(request).encode(), failed


def _query_action(body: bytes) -> str:
    for pair in body.split(b"&"):
        if pair.startswith(b"Action="):
            return pair[7:].decode(errors="replace")
    return "unknown"
