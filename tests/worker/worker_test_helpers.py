"""Shared helpers for the worker's SQS tests: queues with a DLQ on a real local server, result
collection, polling with deadlines (never sleeps standing in for synchronisation)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.config import WorkerSettings
from worker.contract.wire import ATTR_MESSAGE_ID, parse_s3_pointer
from worker.errors import InputTooLong
from worker.metrics import Metrics, PrometheusObserver
from worker.pipeline import Worker
from worker.seams import Encoded, ModelFailure, QueueSeam
from worker.sqs import SqsAdapter

REGION = "us-east-1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Clock:
    """A monotonic clock the test moves by hand (`clock.now = ...`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Queues:
    input: str
    dlq: str
    results: str


def make_queues(
    client: Any, *, max_receive_count: int = 3, visibility_s: int = 30, result_max_size: int = 0
) -> Queues:
    name = unique("gq")
    dlq = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    )
    source = client.create_queue(
        QueueName=f"{name}-in",
        Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_s)},
    )["QueueUrl"]
    result_attrs = {"MaximumMessageSize": str(result_max_size)} if result_max_size else {}
    results = client.create_queue(QueueName=f"{name}-out", Attributes=result_attrs)["QueueUrl"]
    return Queues(source, dlq, results)


def send_bodies(client: Any, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Send raw bodies 10 per call; returns the SQS message ids in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
        )
        assert not response.get("Failed"), response["Failed"]
        by_index = {int(e["Id"]): e["MessageId"] for e in response["Successful"]}
        ids += [by_index[i] for i in range(len(chunk))]
    return ids


def request(text: str | list[str], **fields: Any) -> str:
    return json.dumps({"inputs": text, **fields})


def counts(client: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) approximate counts."""
    attrs = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


class ResultReader:
    """Reads a result queue like a consumer: deletes what it reads, drops duplicates by
    gpuqueue-message-id, follows S3 pointers when given an S3 client."""

    def __init__(self, client: Any, queue_url: str, s3_client: Any = None) -> None:
        self.client = client
        self.queue_url = queue_url
        self.s3 = s3_client
        self.results: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.pointers = 0

    def poll(self, wait_s: int = 1) -> int:
        response = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        for message in messages:
            body = message["Body"]
            pointer = parse_s3_pointer(body)
            if pointer is not None:
                assert self.s3 is not None, "got an S3 pointer but no S3 client to follow it"
                self.pointers += 1
                size = int(message["MessageAttributes"]["ExtendedPayloadSize"]["StringValue"])
                body = self.s3.get_object(Bucket=pointer[0], Key=pointer[1])["Body"].read().decode()
                assert len(body.encode()) == size
            result = json.loads(body)
            key = message["MessageAttributes"][ATTR_MESSAGE_ID]["StringValue"]
            assert key == result["message_id"]
            if key in self.results:
                self.duplicates += 1
            self.results[key] = result
            self.client.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(messages)

    def wait_for(self, n: int, timeout: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.results) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.results)} of {n} results in {timeout:.0f}s")
            self.poll()
        return self.results


class FakeRunner:
    """A plain in-memory model for pipeline logic tests: one "token" per word, the output is the
    token count per input. Text containing POISON fails every time (a transient ModelError);
    `gate` (when set) holds each batch until it is opened."""

    name = "fake-model"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.batches: list[int] = []
        self.running = threading.Event()

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        if "bad_param" in parameters:
            raise ValueError("parameter 'bad_param' is not known")
        ids = [[hash(w) % 1000 for w in text.split()] or [0] for text in texts]
        for index, seq in enumerate(ids):
            if len(seq) > 50:
                raise InputTooLong(index, len(seq), 50)
        poison = any("POISON" in t for t in texts)
        return Encoded([*ids, [-1]] if poison else ids)

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> list[Encoded]:
        return [encoded for encoded, _ in items]

    def run(self, prepared: list[Encoded]) -> list[Any]:
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(60), "test gate never opened"
        self.batches.append(len(prepared))
        out: list[Any] = []
        for encoded in prepared:
            if encoded.token_ids[-1] == [-1]:
                out.append(ModelFailure("ModelError", "poisoned input"))
            else:
                out.append([len(ids) for ids in encoded.token_ids])
        return out


def start_worker(
    endpoint: str,
    queues: Queues,
    runner: Any,
    workers: list[Worker],
    metrics: Metrics | None = None,
    sqs: QueueSeam | None = None,
    **settings: Any,
) -> Worker:
    """A Worker with test-friendly settings (short polls and waits) on a real local SQS server;
    `sqs` wraps the adapter where a test needs to see or steer its calls."""
    options: dict[str, Any] = {
        "queue_url": queues.input,
        "result_queue_url": queues.results,
        "receivers": 2,
        "http_port": 0,
        "max_wait_ms": 5,
        "receive_wait_s": 1,
    }
    options.update(settings)
    if sqs is None:
        sqs = SqsAdapter.from_environment(endpoint_url=endpoint, region_name=REGION)
    observers = [PrometheusObserver(metrics)] if metrics is not None else []
    worker = Worker(WorkerSettings(**options), runner, sqs, observers=observers, region=REGION)
    workers.append(worker)
    return worker.start()
