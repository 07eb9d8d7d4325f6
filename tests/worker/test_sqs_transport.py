"""The signed JSON transport against a scripted local HTTP server (status codes, error headers
and hangs an emulator will not produce on demand), and against the real emulators."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from worker.errors import error_code
from worker.sqs import SqsAdapter
from worker.sqs_transport import SignedJsonTransport, SqsApiError

REGION = "us-east-1"


class Script:
    """Answers to give, in order (status, headers, body); the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            script.requests.append((headers, json.loads(body)))
            turn = min(len(script.requests), len(script.answers)) - 1
            status, headers, answer = script.answers[turn]
            data = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def transport(endpoint: str, **options: Any) -> SignedJsonTransport:
    settings = {"read_timeout_s": 2.0, "connect_timeout_s": 1.0, "max_attempts": 3}
    settings.update(options)
    return SignedJsonTransport.from_session(
        endpoint_url=endpoint, region_name=REGION, sleep=lambda _: None, **settings
    )


def test_a_call_is_signed_json_with_the_operation_as_target(scripted: tuple[str, Script]) -> None:
    endpoint, script = scripted
    script.answers = [(200, {}, {"QueueUrl": "http://x/000000000000/q"})]
    assert transport(endpoint).call("GetQueueUrl", {"QueueName": "q"}) == {
        "QueueUrl": "http://x/000000000000/q"
    }
    headers, body = script.requests[0]
    assert body == {"QueueName": "q"}
    assert headers["x-amz-target"] == "AmazonSQS.GetQueueUrl"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/us-east-1/sqs/aws4_request" in headers["authorization"]


def test_the_host_sent_is_the_one_signed_as_botocore_derives_it(
    scripted: tuple[str, Script]
) -> None:
    """An endpoint written in capitals: the Host header sent (and signed) is botocore's, lower
    case (the signature itself is held to botocore's in tests/worker/test_sqs_signing.py)."""
    endpoint, script = scripted
    port = endpoint.rsplit(":", 1)[1]
    script.answers = [(200, {}, {})]
    transport(f"http://LOCALHOST:{port}").call("ListQueues", {})
    headers, _ = script.requests[0]
    assert headers["host"] == f"localhost:{port}"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "host" in signed


def test_transient_answers_are_retried_and_then_succeed(scripted: tuple[str, Script]) -> None:
    endpoint, script = scripted
    throttled = {"x-amzn-query-error": "ThrottlingException;Sender"}
    script.answers = [
        (503, {}, {"__type": "ServiceUnavailable", "message": "busy"}),
        (400, throttled, {"__type": "com.amazon.coral.availability#ThrottlingException"}),
        (200, {}, {"Successful": []}),
    ]
    assert transport(endpoint).call("DeleteMessageBatch", {"Entries": []}) == {"Successful": []}
    assert len(script.requests) == 3


def test_the_query_compatible_error_code_is_reported_and_not_retried(
    scripted: tuple[str, Script],
) -> None:
    endpoint, script = scripted
    script.answers = [
        (
            400,
            {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
            {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no such queue"},
        )
    ]
    with pytest.raises(SqsApiError) as info:
        transport(endpoint).call("SendMessageBatch", {"Entries": []})
    assert error_code(info.value) == "AWS.SimpleQueueService.NonExistentQueue"
    assert info.value.status == 400 and "no such queue" in str(info.value)
    assert len(script.requests) == 1


def test_attempts_are_bounded(scripted: tuple[str, Script]) -> None:
    endpoint, script = scripted
    script.answers = [(500, {}, {"__type": "InternalFailure"})]
    with pytest.raises(SqsApiError, match="InternalFailure"):
        transport(endpoint, max_attempts=4).call("ReceiveMessage", {})
    assert len(script.requests) == 4


def test_a_connection_the_server_closed_is_reopened(scripted: tuple[str, Script]) -> None:
    endpoint, script = scripted
    script.answers = [(200, {"Connection": "close"}, {}), (200, {}, {"ok": 1})]
    t = transport(endpoint, max_attempts=1)  # no retry: the reopen must not need one
    assert t.call("ReceiveMessage", {}) == {}
    assert t.call("ReceiveMessage", {}) == {"ok": 1}


def test_each_thread_has_its_own_connection(scripted: tuple[str, Script]) -> None:
    endpoint, script = scripted
    script.answers = [(200, {}, {"ok": 1})]
    t = transport(endpoint)
    results: list[Any] = []

    def calls() -> None:
        results.extend(t.call("ReceiveMessage", {}) for _ in range(20))

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [{"ok": 1}] * 80


def test_an_unreachable_endpoint_is_a_connection_error() -> None:
    started = time.monotonic()
    with pytest.raises(SqsApiError) as info:
        transport("http://127.0.0.1:9", max_attempts=2).call("ReceiveMessage", {})
    assert info.value.code == "ConnectionError"
    assert time.monotonic() - started < 10


def test_the_adapter_maps_a_missing_queue_on_a_real_server(sqs_server: Any) -> None:
    adapter = SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    missing = f"{sqs_server.endpoint_url}/000000000000/no-such-queue-here"
    with pytest.raises(Exception) as info:
        adapter.queue_attributes(missing, ["QueueArn"])
    assert error_code(info.value) in (
        "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
    )


@pytest.fixture
def dripping() -> Iterator[tuple[str, threading.Event]]:
    """An endpoint that reads the request, then sends its answer a byte every 50 ms (well under
    any per-read timeout, 3 s in all), until the test ends."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n' + (
        b"x-padding: " + b"." * 40 + b"\r\nContent-Length: 2\r\n\r\n{}"
    )

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in answer:
                if done.wait(0.05):
                    return
                connection.sendall(bytes([byte]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", done
    done.set()
    thread.join(5)
    listener.close()


def test_an_endpoint_that_drips_its_answer_is_cut_off_at_the_read_timeout(
    dripping: tuple[str, threading.Event],
) -> None:
    """The read timeout bounded each read, not the answer: an endpoint (or a middlebox) sending
    a byte at a time held a call for as long as it liked, and a heartbeat behind it. The whole
    answer must come within the read timeout now."""
    endpoint, _ = dripping
    started = time.monotonic()
    with pytest.raises(SqsApiError) as info:
        transport(endpoint, read_timeout_s=0.5, max_attempts=1).call("ChangeMessageVisibility", {})
    assert info.value.code == "ConnectionError"
    assert time.monotonic() - started < 2.0


def test_the_https_proxy_gets_the_credentials_its_url_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY=http://user:pass@proxy: the user:pass was dropped, the CONNECT went out
    without Proxy-Authorization, and behind a proxy that asks for it every SQS call was a 407
    (boto3, which the transport replaced, sends it)."""
    import base64
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def proxy() -> None:
        connection, _ = listener.accept()
        with connection:
            seen.append(connection.recv(65536))
            connection.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Content-Length: 0\r\n\r\n")

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    monkeypatch.setenv("HTTPS_PROXY", f"http://alice:s3cret@127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        with pytest.raises(SqsApiError, match="407"):
            transport("https://sqs.us-east-1.amazonaws.com", max_attempts=1).call(
                "ListQueues", {}
            )
    finally:
        thread.join(5)
        listener.close()
    [connect] = seen
    assert connect.startswith(b"CONNECT sqs.us-east-1.amazonaws.com:443 ")
    expected = base64.b64encode(b"alice:s3cret").decode()
    assert f"Proxy-Authorization: Basic {expected}".encode() in connect
