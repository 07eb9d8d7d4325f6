"""SQS counts from a real local SQS server (fauxqs and moto); CloudWatch via moto's server;
Prometheus via a local HTTP server answering /api/v1/query."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from http_stub import send_json

from scaler.drain import CloudWatchDrain, DrainError, PrometheusDrain, total_rate
from scaler.queue import QueueError, SqsQueues, queue_name

REGION = "us-east-1"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_snapshot_counts_visible_in_flight_and_delayed(sqs_client: Any) -> None:
    url = sqs_client.create_queue(QueueName=unique_name("scaler"))["QueueUrl"]
    for i in range(5):
        sqs_client.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs_client.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=600)
    snap = SqsQueues(sqs_client).snapshot(url)
    assert (snap.visible, snap.in_flight, snap.delayed) == (3, 2, 1)


def test_missing_queue_is_named(sqs_client: Any) -> None:
    url = sqs_client.create_queue(QueueName=unique_name("gone"))["QueueUrl"]
    sqs_client.delete_queue(QueueUrl=url)
    with pytest.raises(QueueError, match="does not exist") as info:
        SqsQueues(sqs_client).snapshot(url)
    assert url in str(info.value)


class Answers:
    """An SQS-compatible endpoint's GetQueueAttributes answer, as given."""

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": self.attributes}


@pytest.mark.parametrize("left_out", ["ApproximateNumberOfMessages",
                                      "ApproximateNumberOfMessagesNotVisible",
                                      "ApproximateNumberOfMessagesDelayed"])
def test_a_count_left_out_of_the_answer_is_an_error_not_zero(left_out: str) -> None:
    """Read as 0, an answer without the counts made a queue with 500 waiting look empty: the
    Deployment was scaled to zero with no error."""
    attributes = {"ApproximateNumberOfMessages": "500",
                  "ApproximateNumberOfMessagesNotVisible": "20",
                  "ApproximateNumberOfMessagesDelayed": "0"}
    del attributes[left_out]
    with pytest.raises(QueueError, match=f"answered without {left_out}"):
        SqsQueues(Answers(attributes)).snapshot("https://sqs.us-east-1.amazonaws.com/1/q")
    with pytest.raises(QueueError, match="non-numeric"):
        SqsQueues(Answers({**attributes, left_out: None})).snapshot("q")


def test_queue_name_from_url() -> None:
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123/jobs") == "jobs"


def test_cloudwatch_drain_rate_from_number_of_messages_deleted(moto_server: Any) -> None:
    cw = boto3.client("cloudwatch", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    name = unique_name("drained")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    for minutes_ago, deleted in ((1, 600.0), (2, 300.0), (4, 60.0)):
        cw.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[{
                "MetricName": "NumberOfMessagesDeleted",
                "Dimensions": [{"Name": "QueueName", "Value": name}],
                "Timestamp": now - dt.timedelta(minutes=minutes_ago, seconds=-5),
                "Value": deleted,
            }],
        )
    source = CloudWatchDrain(cw, window_s=600, minutes=2)
    rate = source.rate(f"http://localhost/123/{name}", now=now)
    assert rate == pytest.approx((600 + 300) / 120)
    assert source.rate("http://localhost/123/other-queue", now=now) is None


class _Prom(BaseHTTPRequestHandler):
    answer: ClassVar[dict[str, Any]] = {}
    queries: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _Prom.queries.append(parse_qs(urlparse(self.path).query)["query"][0])
        send_json(self, 200, _Prom.answer)


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prom)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_prometheus_drain_rate(prometheus: str) -> None:
    _Prom.answer = {"status": "success",
                    "data": {"resultType": "vector", "result": [{"value": [0, "12.5"]}]}}
    source = PrometheusDrain(prometheus, 'sum(rate(x{{namespace="{namespace}"}}[2m]))')
    assert source.rate("q", "ml", "worker") == 12.5
    assert _Prom.queries[-1] == 'sum(rate(x{namespace="ml"}[2m]))'
    _Prom.answer = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert source.rate("q", "ml", "worker") is None
    _Prom.answer = {"status": "error", "error": "parse error"}
    with pytest.raises(DrainError, match="parse error"):
        source.rate("q", "ml", "worker")


def test_prometheus_unreachable_is_a_drain_error() -> None:
    with pytest.raises(DrainError, match="Prometheus"):
        PrometheusDrain("http://127.0.0.1:9", "up", timeout_s=2).rate("q", "ml", "w")


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-3"])
def test_a_drain_rate_that_is_not_a_rate_is_a_drain_error(prometheus: str, value: str) -> None:
    """Prometheus answers NaN (0/0) and +Inf as readily as a number: NaN broke the decision
    (math.ceil), inf scaled to max and then the state's JSON, at every run. A DrainError is what
    the runner falls back from (to the learned rate, or the prior)."""
    _Prom.answer = {"status": "success",
                    "data": {"resultType": "vector", "result": [{"value": [0, value]}]}}
    source = PrometheusDrain(prometheus, "up")
    with pytest.raises(DrainError, match="not a rate"):
        total_rate(source, ["q"], "ml", "worker")


def test_a_query_template_str_format_cannot_fill_is_a_drain_error() -> None:
    with pytest.raises(DrainError, match="query template"):
        PrometheusDrain("http://127.0.0.1:9", 'x{job="a"}').rate("q", "ml", "w")


@pytest.mark.parametrize("answer", [[1, 2], None, {"status": "success", "data": [1]},
                                    {"status": "success", "data": {"result": "x"}}])
def test_an_answer_of_the_wrong_shape_is_a_drain_error(prometheus: str, answer: Any) -> None:
    """A list or null where the object belongs raised AttributeError, which the runner does not
    fall back from: the target failed its run instead of scaling on the learned rate."""
    _Prom.answer = answer  # type: ignore[assignment]
    with pytest.raises(DrainError, match="Prometheus"):
        PrometheusDrain(prometheus, "up").rate("q", "ml", "w")


@pytest.mark.parametrize(
    "reply",
    [
        b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",  # an HTTP/2 or gRPC port: BadStatusLine
        b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n{\"status\": \"succ",  # cut short
    ],
)
def test_a_server_that_does_not_answer_http_or_stops_midway_is_a_drain_error(
    reply: bytes,
) -> None:
    """http.client's own exceptions (BadStatusLine, IncompleteRead) are neither URLError nor
    OSError: they escaped as the target's failure ("unexpected BadStatusLine") and a wrong
    SCALER_PROMETHEUS_URL kept every target on it from scaling."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(DrainError, match="Prometheus"):
            PrometheusDrain(f"http://127.0.0.1:{listener.getsockname()[1]}", "up",
                            timeout_s=5).rate("q", "ml", "w")
    finally:
        thread.join(5)
        listener.close()
