"""The result writers grow when results wait for a free one: a writer's send and delete are two
round trips, so with a slow SQS endpoint (a cross-cloud round trip) a fixed few of them would cap
the worker, whatever the model's speed."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from worker_test_helpers import (
    REGION,
    FakeRunner,
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    start_worker,
    wait_for,
)

from worker.pipeline import Worker
from worker.seams import BatchOutcome, OutgoingMessage
from worker.sqs import SqsAdapter


class SendsHeld:
    """The real adapter; every SendMessageBatch waits until the test opens the gate (a slow round
    trip, steered). Counts the sends in flight at once."""

    def __init__(self, adapter: SqsAdapter) -> None:
        self.adapter = adapter
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            assert self.gate.wait(60), "the test never opened the gate"
            return self.adapter.send_batch(queue_url, messages)
        finally:
            with self._lock:
                self.in_flight -= 1


def run_held(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker], **settings: Any
) -> tuple[Worker, SendsHeld, Any]:
    queues = make_queues(sqs_client)
    send_bodies(sqs_client, queues.input, [request(f"r {i}", id=f"r{i}") for i in range(60)])
    sqs = SendsHeld(
        SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    )
    worker = start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers, sqs=sqs,
        max_batch_size=30, writers=1, **settings,
    )
    wait_for(lambda: worker.stats.batches >= 2, 30, "both batches to run")
    return worker, sqs, queues


def test_writers_are_added_while_full_groups_wait_up_to_the_maximum(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    worker, sqs, queues = run_held(sqs_server, sqs_client, running_workers, max_writers=3)
    # 60 results, 6 full groups, every send held: a writer is added per waiting group, to 3
    wait_for(lambda: sqs.in_flight == 3, 30, "three sends in flight")
    assert len(worker.writer.threads) == 3
    sqs.gate.set()
    assert len(ResultReader(sqs_client, queues.results).wait_for(60, 30)) == 60
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 30, "every request deleted")
    assert sqs.most_in_flight == 3 and len(worker.writer.threads) == 3


def test_max_writers_equal_to_writers_keeps_the_count_fixed(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    worker, sqs, queues = run_held(sqs_server, sqs_client, running_workers, max_writers=1)
    wait_for(lambda: sqs.in_flight == 1, 30, "a send in flight")
    assert worker.writer.outbox.unserved() > 0  # results wait, and still no writer is added
    sqs.gate.set()
    assert len(ResultReader(sqs_client, queues.results).wait_for(60, 30)) == 60
    assert sqs.most_in_flight == 1 and len(worker.writer.threads) == 1


class FirstDeleteFails:
    """The real adapter; the first DeleteMessageBatch fails (the result is out, the request
    stays and comes back)."""

    def __init__(self, adapter: SqsAdapter) -> None:
        self.adapter = adapter
        self.deletes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome:
        self.deletes += 1
        if self.deletes == 1:
            raise ConnectionError("the delete did not reach SQS")
        return self.adapter.delete_batch(queue_url, receipt_handles)


def test_succeeded_counts_a_request_once_when_its_first_delete_failed(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """`gpuqueue_messages_succeeded_total` ("answered with an ok result and deleted") counted
    every ok result sent: a request whose delete failed came back, was answered again, and
    counted twice."""
    from worker.metrics import Metrics

    queues = make_queues(sqs_client, visibility_s=2)
    send_bodies(sqs_client, queues.input, [request("once", id="once")])
    sqs = FirstDeleteFails(
        SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    )
    metrics = Metrics()
    worker = start_worker(sqs_server.endpoint_url, queues, FakeRunner(), running_workers,
                          sqs=sqs, metrics=metrics, visibility_timeout_s=2, receivers=1)
    reader = ResultReader(sqs_client, queues.results)
    wait_for(lambda: sqs.deletes >= 2 and worker.held == 0, 30, "the redelivered request")
    assert next(iter(reader.wait_for(1, timeout=10).values()))["id"] == "once"
    text = metrics.render().decode()
    assert "gpuqueue_messages_succeeded_total 1.0" in text, text
