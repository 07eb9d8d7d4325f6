"""moto's server as the tests start it: one ReceiveMessage scan at a time, long polls unchanged."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from worker_test_helpers import REGION

from worker.devmoto import atomic_receive
from worker.devsqs import LocalServer


class Backend:
    """moto's backend as the wrapper sees it: a scan, and a queue to wait on."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.second_arrived = threading.Event()
        self.waiting = threading.Event()
        self.sent = threading.Event()

    def get_queue(self, name: str) -> Backend:
        return self

    def wait_for_messages(self, timeout: int) -> None:
        self.waiting.set()
        self.sent.wait(timeout)


def racing_scan(
    backend: Backend, queue: str, count: int, wait: int, visibility: int, names: Any
) -> list[Any]:
    """The first scan stays inside until a second one arrives (or 1 s passes): without a lock,
    the second enters beside it, as two server threads do between moto's visibility check and
    its mark_received."""
    assert wait == 0, "a scan must not wait: the wrapper waits outside the lock"
    backend.inside += 1
    backend.most_inside = max(backend.most_inside, backend.inside)
    if backend.inside == 1:
        backend.second_arrived.wait(1.0)
    else:
        backend.second_arrived.set()
    backend.inside -= 1
    return [queue]


def test_two_receives_never_scan_at_once() -> None:
    backend = Backend()
    receive = atomic_receive(racing_scan)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda q: receive(backend, q, 10, 0, 30), ["a", "b"]))
    assert sorted(r[0] for r in results) == ["a", "b"]
    assert backend.most_inside == 1  # unwrapped, racing_scan reaches 2


def test_a_long_poll_waits_outside_the_lock() -> None:
    backend = Backend()

    def scan(b: Backend, queue: str, *args: Any) -> list[Any]:
        return [queue] if queue == "full" or b.sent.is_set() else []

    receive = atomic_receive(scan)
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(receive, backend, "empty", 10, 20, 30)
        assert backend.waiting.wait(5)  # the long poll found nothing and is waiting
        started = time.monotonic()
        assert receive(backend, "full", 10, 0, 30) == ["full"]  # not held by that wait
        assert time.monotonic() - started < 0.5
        assert not polling.done()
        backend.sent.set()  # a message arrives: the waiting poll rescans and returns it
        assert polling.result(timeout=5) == ["empty"]


def test_the_server_hands_each_message_to_one_receive(moto_server: LocalServer) -> None:
    client = boto3.client("sqs", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    queue = client.create_queue(
        QueueName=f"devmoto-{uuid.uuid4().hex[:10]}", Attributes={"VisibilityTimeout": "60"}
    )["QueueUrl"]
    for start in range(0, 200, 10):
        client.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)],
        )
    received: Counter[str] = Counter()
    lock = threading.Lock()

    def receiver() -> None:
        own = boto3.client("sqs", endpoint_url=moto_server.endpoint_url, region_name=REGION)
        while batch := own.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            with lock:
                received.update(m["MessageId"] for m in batch)

    threads = [threading.Thread(target=receiver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(received) == 200
    assert received.most_common(1)[0][1] == 1


def test_a_long_poll_on_the_server_returns_a_message_sent_during_it(
    moto_server: LocalServer,
) -> None:
    client = boto3.client("sqs", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    queue = client.create_queue(QueueName=f"devmoto-poll-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(
            client.receive_message, QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=10
        )
        sender = boto3.client("sqs", endpoint_url=moto_server.endpoint_url, region_name=REGION)
        started = time.monotonic()
        sender.send_message(QueueUrl=queue, MessageBody="late")
        messages = polling.result(timeout=15).get("Messages", [])
    assert [m["Body"] for m in messages] == ["late"]
    assert time.monotonic() - started < 5  # woken by the send, not the 10 s deadline
