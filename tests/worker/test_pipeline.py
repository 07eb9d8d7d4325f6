"""The pipeline's logic against real local SQS servers (fauxqs and moto), with a plain in-memory
model so the tests can hold a batch on the "device" and look at what the worker does meanwhile.
The real model runs in test_integration.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from worker_test_helpers import (
    FakeRunner,
    Queues,
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    wait_for,
)

from worker.config import WorkerSettings
from worker.pipeline import Worker
from worker.sqs import SqsAdapter, make_client

REGION = "us-east-1"


@pytest.fixture
def running_workers() -> Iterator[list[Worker]]:
    """Workers a test starts are drained at the end even when the test fails."""
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        if not worker._stopped.is_set():
            worker.shutdown(timeout_s=5)


def start_worker(
    endpoint: str, queues: Queues, runner: Any, workers: list[Worker], **settings: Any
) -> Worker:
    options: dict[str, Any] = {
        "queue_url": queues.input,
        "result_queue_url": queues.results,
        "receivers": 2,
        "http_port": 0,
        "max_wait_ms": 5,
        "receive_wait_s": 1,
    }
    options.update(settings)
    sqs = SqsAdapter(make_client(endpoint_url=endpoint, region_name=REGION))
    worker = Worker(WorkerSettings(**options), runner, sqs, region=REGION)
    workers.append(worker)
    return worker.start()


def test_bad_input_gets_error_results_and_the_rest_of_the_batch_is_unaffected(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    elsewhere = sqs_client.create_queue(QueueName="not-allowed-" + queues.input[-8:])["QueueUrl"]
    bodies = {
        "good-1": request("one two three", id="good-1"),
        "good-2": request(["a b", "c d e f"], id="good-2"),
        "not-json": "{not json",
        "schema": request(5, id="schema"),
        "empty": request([], id="empty"),
        "too-long": request("w " * 60, id="too-long"),
        "task": request("x", id="task", task="translate"),
        "params": request("x", id="params", parameters={"bad_param": 1}),
        "reply": request("x", id="reply", reply_to=elsewhere),
        "big": request("x" * 3000, id="big"),
    }
    ids = send_bodies(sqs_client, queues.input, list(bodies.values()))
    by_message = dict(zip(ids, bodies, strict=True))
    start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers, max_body_bytes=2048
    )

    results = ResultReader(sqs_client, queues.results).wait_for(len(bodies), timeout=60)
    outcome = {by_message[mid]: r for mid, r in results.items()}
    assert outcome["good-1"]["status"] == "ok" and outcome["good-1"]["outputs"] == [3]
    assert outcome["good-2"]["outputs"] == [2, 4]
    expected_errors = {
        "not-json": "InvalidJSON",
        "schema": "InvalidRequest",
        "empty": "EmptyInputs",
        "too-long": "InputTooLong",
        "task": "UnknownTask",
        "params": "InvalidParameters",
        "reply": "ReplyToNotAllowed",
        "big": "BodyTooLarge",
    }
    for name, error_type in expected_errors.items():
        assert outcome[name]["status"] == "error", name
        assert outcome[name]["error"]["type"] == error_type, (name, outcome[name])
        assert outcome[name]["message_id"] in ids
    assert outcome["reply"]["id"] == "reply"
    # every request deleted, nothing dead-lettered, nothing written to the not-allowed queue
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")
    assert counts(sqs_client, queues.dlq) == (0, 0)
    assert counts(sqs_client, elsewhere) == (0, 0)


def test_reply_to_on_the_allow_list_gets_the_result(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    team = sqs_client.create_queue(QueueName="team-a-" + queues.input[-8:])["QueueUrl"]
    prefix = team.rsplit("/", 1)[0] + "/team-a-"
    send_bodies(sqs_client, queues.input, [request("to the team", id="t", reply_to=team)])
    start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers, reply_to_allow=prefix
    )
    results = ResultReader(sqs_client, team).wait_for(1, timeout=30)
    assert [r["id"] for r in results.values()] == ["t"]
    assert counts(sqs_client, queues.results) == (0, 0)


def test_transient_failure_is_left_for_redelivery_and_dead_letters(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, max_receive_count=2)
    send_bodies(sqs_client, queues.input, [request("POISON pill", id="p"), request("fine", id="f")])
    worker = start_worker(sqs_server.endpoint_url, queues, FakeRunner(), running_workers)
    reader = ResultReader(sqs_client, queues.results)
    reader.wait_for(1, timeout=30)
    assert [r["id"] for r in reader.results.values()] == ["f"]
    # two receives fail (back-off 2 s, then 4 s); the third receive moves it to the DLQ
    wait_for(lambda: counts(sqs_client, queues.dlq)[0] == 1, 40, "poison message in the DLQ")
    dead = sqs_client.receive_message(QueueUrl=queues.dlq, MaxNumberOfMessages=1)["Messages"][0]
    assert '"id": "p"' in dead["Body"]
    assert worker.metrics.failed.labels(error_type="ModelError")._value.get() >= 2
    reader.poll(wait_s=0)
    assert len(reader.results) == 1  # no result was ever written for the poison message


def test_heartbeat_keeps_a_held_message_invisible(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """Visibility 3 s, batch held on the model for several timeouts: the heartbeat extends it, so
    another consumer never sees it, and exactly one result comes out."""
    queues = make_queues(sqs_client)
    gate = threading.Event()
    runner = FakeRunner(gate)
    [message_id] = send_bodies(sqs_client, queues.input, [request("slow one", id="slow")])
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, visibility_timeout_s=3
    )
    wait_for(runner.running.is_set, 30, "the batch to reach the model")
    extended = wait_for(
        lambda: (
            worker.metrics.registry.get_sample_value("gpuqueue_in_flight_messages") == 1
            and worker.heartbeats >= 3
        ),
        30,
        "three heartbeats",
    )
    assert extended
    # well past the first 3 s timeout, another consumer still cannot get it
    other = boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    assert other.receive_message(QueueUrl=queues.input, WaitTimeSeconds=1).get("Messages") is None
    gate.set()
    results = ResultReader(sqs_client, queues.results).wait_for(1, timeout=30)
    assert list(results) == [message_id]
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")


def test_back_pressure_holds_at_most_the_buffer_bound(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    gate = threading.Event()
    runner = FakeRunner(gate)
    n = 40
    send_bodies(sqs_client, queues.input, [request(f"message {i}") for i in range(n)])
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, buffer_max=12, max_batch_size=4
    )
    # the worker fills up to its bound and stops there: the rest stays visible for other workers
    wait_for(lambda: worker.held == 12, 30, "the worker to hold 12 messages")
    wait_for(lambda: counts(sqs_client, queues.input) == (n - 12, 12), 30, "queue counts to settle")
    assert worker.held == 12
    gate.set()
    results = ResultReader(sqs_client, queues.results).wait_for(n, timeout=60)
    assert all(r["status"] == "ok" for r in results.values())
    assert max(runner.batches) <= 4


def test_shutdown_finishes_the_batch_in_hand_and_releases_the_rest(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, visibility_s=300)
    gate = threading.Event()
    runner = FakeRunner(gate)
    n = 30
    send_bodies(sqs_client, queues.input, [request(f"message {i}") for i in range(n)])
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, max_batch_size=4, buffer_max=n,
        visibility_timeout_s=300,
    )  # fmt: skip
    wait_for(runner.running.is_set, 30, "the first batch to reach the model")
    wait_for(lambda: worker.held == n, 30, "the worker to hold every message")
    drained = threading.Thread(target=worker.shutdown, kwargs={"timeout_s": 30})
    drained.start()
    wait_for(lambda: worker._draining.is_set(), 10, "the drain to begin")
    gate.set()  # the batch in hand finishes
    drained.join(40)
    assert not drained.is_alive()
    reader = ResultReader(sqs_client, queues.results)
    reader.wait_for(runner.batches[0], timeout=30)
    reader.poll(wait_s=0)
    assert len(reader.results) == sum(runner.batches) <= 8  # the batch in hand (+ one at most)
    # released with visibility 0: visible now, not after the 300 s timeout
    visible, _in_flight = wait_for(
        lambda: (c := counts(sqs_client, queues.input))[1] == 0 and c, 10, "releases to land"
    )
    assert visible == n - len(reader.results)
    assert worker.held == 0
