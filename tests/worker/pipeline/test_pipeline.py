"""The pipeline's logic against real local SQS servers (fauxqs and moto), with a plain in-memory
model so the tests can hold a batch on the "device" and look at what the worker does meanwhile.
The real model runs in test_integration.py."""

from __future__ import annotations

import threading
from typing import Any

import boto3
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

from worker.metrics import Metrics
from worker.pipeline import Worker


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
        # an integer too large for a float: it overflowed the deadline and killed the encoder
        "huge-ttl": request("x", id="huge-ttl", ttl_s=10**400),
        # legal JSON ("\ud800"), but no tokenizer takes it
        "surrogate": request("ok \ud800 text", id="surrogate"),
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
        "huge-ttl": "InvalidRequest",
        "surrogate": "InvalidRequest",
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
    metrics = Metrics()
    start_worker(sqs_server.endpoint_url, queues, FakeRunner(), running_workers, metrics)
    reader = ResultReader(sqs_client, queues.results)
    reader.wait_for(1, timeout=30)
    assert [r["id"] for r in reader.results.values()] == ["f"]
    # two receives fail (back-off 2 s, then 4 s); the third receive moves it to the DLQ
    wait_for(lambda: counts(sqs_client, queues.dlq)[0] == 1, 40, "poison message in the DLQ")
    dead = sqs_client.receive_message(QueueUrl=queues.dlq, MaxNumberOfMessages=1)["Messages"][0]
    assert '"id": "p"' in dead["Body"]
    assert metrics.failed.labels(error_type="ModelError", final="false")._value.get() >= 2
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
        lambda: worker.held == 1 and worker.stats.heartbeats >= 3,
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
    )
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


def test_a_batch_that_outlasts_the_drain_is_never_released_behind_the_models_back(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """The batch on the device is still running when the drain's deadline passes: it stays
    invisible (the model owns it) instead of being released and then answered as well."""
    queues = make_queues(sqs_client, visibility_s=30)
    gate = threading.Event()
    runner = FakeRunner(gate)
    [message_id] = send_bodies(sqs_client, queues.input, [request("slow", id="slow")])
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, visibility_timeout_s=30
    )
    wait_for(runner.running.is_set, 30, "the batch to reach the model")
    worker.shutdown(timeout_s=2)  # the model still holds it
    other = boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    # not released: nobody else can receive it while the model runs it
    assert other.receive_message(QueueUrl=queues.input, WaitTimeSeconds=2).get("Messages") is None
    gate.set()
    wait_for(lambda: runner.batches == [1], 10, "the model to finish")
    assert worker.held == 1  # the late outcome is dropped (the writers are gone), not written
    assert ResultReader(sqs_client, queues.results).poll(wait_s=1) == 0
    # so it is answered once, later, after its visibility timeout: by another replica
    assert message_id


def test_without_a_result_queue_a_request_without_reply_to_is_never_run_and_dead_letters(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, max_receive_count=2)
    team = sqs_client.create_queue(QueueName="team-a-" + queues.input[-8:])["QueueUrl"]
    prefix = team.rsplit("/", 1)[0] + "/team-a-"
    send_bodies(
        sqs_client,
        queues.input,
        [request("nowhere to go", id="lost"), request("to the team", id="t", reply_to=team)],
    )
    runner = FakeRunner()
    metrics = Metrics()
    start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, metrics,
        result_queue_url=None, require_reply_to=True, reply_to_allow=prefix,
    )
    results = ResultReader(sqs_client, team).wait_for(1, timeout=30)
    assert [r["id"] for r in results.values()] == ["t"]
    wait_for(lambda: counts(sqs_client, queues.dlq)[0] == 1, 40, "the unanswerable one in the DLQ")
    assert runner.batches == [1]  # only the answerable request ever reached the model
    assert metrics.failed.labels(error_type="NoResultDestination", final="false")._value.get() >= 1


def test_an_allowed_reply_to_that_does_not_exist_is_answered_on_the_result_queue(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """QueueDoesNotExist on an allowed reply_to is permanent: an error result on the result
    queue, the request deleted, the model run once (not again and again until the DLQ)."""
    queues = make_queues(sqs_client, max_receive_count=3)
    base = queues.input.rsplit("/", 1)[0]
    gone = f"{base}/gone-{queues.input[-8:]}"
    send_bodies(sqs_client, queues.input, [request("x", id="g", reply_to=gone)])
    runner = FakeRunner()
    start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, reply_to_allow=base + "/gone-"
    )
    results = ResultReader(sqs_client, queues.results).wait_for(1, timeout=30)
    [result] = results.values()
    assert (result["id"], result["status"], result["error"]["type"]) == (
        "g", "error", "ReplyToUnreachable",
    )
    assert gone in result["error"]["message"]
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "the request deleted")
    assert counts(sqs_client, queues.dlq) == (0, 0)
    assert runner.batches == [1]


class NextBatchReady(FakeRunner):
    """The first batch runs at once (and so times the model: before any batch is timed, the
    next is formed only once the model is free); the second returns once the third is prepared
    and waiting; the third is gated."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate2 = gate
        self.prepared = 0

    def prepare(self, items: Any) -> Any:
        self.prepared += 1
        return super().prepare(items)

    def run(self, prepared: Any) -> Any:
        if len(self.batches) == 1:
            wait_for(lambda: self.prepared >= 3, 30, "the next batch prepared")
        elif self.batches:
            assert self.gate2.wait(60)
        return super().run(prepared)


def test_finished_results_do_not_wait_for_the_next_batch(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """A batch's results go out within the writers' linger, whatever runs on the device next
    (before: held back to fill the next batch's SendMessageBatch, behind a long batch)."""
    queues = make_queues(sqs_client)
    gate = threading.Event()
    send_bodies(
        sqs_client, queues.input,
        [request("zero", id="0"), request("one", id="1"), request("two", id="2")],
    )
    start_worker(
        sqs_server.endpoint_url, queues, NextBatchReady(gate), running_workers, max_batch_size=1,
        receivers=1,
    )
    try:
        results = ResultReader(sqs_client, queues.results).wait_for(2, timeout=10)
        assert len(results) == 2  # the third is still on the (gated) device
    finally:
        gate.set()
