"""The queue monitor (worker/queue_monitor.py): its pure parts, then the real thing against both
local SQS servers (fauxqs and moto): a queue with a DLQ by redrive policy, messages put into the
DLQ by the worker's own failures and by hand, the gauges' values read from the registry."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from worker_test_helpers import (
    FakeRunner,
    ResultReader,
    make_queues,
    request,
    send_bodies,
    wait_for,
)

from worker.config import BUNDLED_MODEL_ID, WorkerSettings, bundled_model_dir, default_model_name
from worker.metrics import Metrics, PrometheusObserver, WindowMax
from worker.pipeline import Worker
from worker.queue_monitor import (
    QueueMonitor,
    dead_letter_arn,
    message_counts,
    parse_queue_arn,
)
from worker.sqs import SqsAdapter

REGION = "us-east-1"
QUEUES = {"queue_url": "https://q.example/1/q", "result_queue_url": "https://q.example/1/r"}
STATES = ("visible", "in_flight", "delayed")


# ---------------------------------------------------------------------------- pure parts


def test_parse_queue_arn() -> None:
    arn = parse_queue_arn("arn:aws:sqs:eu-west-1:123456789012:jobs-dlq")
    assert (arn.region, arn.account_id, arn.name) == ("eu-west-1", "123456789012", "jobs-dlq")
    assert parse_queue_arn("arn:aws-cn:sqs:cn-north-1:1:q.fifo").name == "q.fifo"
    for bad in ("", "jobs-dlq", "arn:aws:sns:eu-west-1:1:topic", "arn:aws:sqs:eu-west-1:1:"):
        with pytest.raises(ValueError):
            parse_queue_arn(bad)


def test_dead_letter_arn_from_redrive_policy() -> None:
    target = "arn:aws:sqs:us-east-1:1:d"
    # AWS returns maxReceiveCount as a string, moto as a number: both are fine
    assert dead_letter_arn({"RedrivePolicy": json.dumps({"deadLetterTargetArn": target})}) == target
    policy = {"deadLetterTargetArn": target, "maxReceiveCount": 3}
    assert dead_letter_arn({"RedrivePolicy": json.dumps(policy)}) == target
    assert dead_letter_arn({}) is None
    assert dead_letter_arn({"RedrivePolicy": ""}) is None
    with pytest.raises(ValueError):
        dead_letter_arn({"RedrivePolicy": "{not json"})


def test_message_counts_leaves_out_what_the_server_did_not_say() -> None:
    attributes = {"ApproximateNumberOfMessages": "7", "ApproximateNumberOfMessagesNotVisible": "2"}
    assert message_counts(attributes) == {"visible": 7, "in_flight": 2}


def test_window_max_is_the_largest_since_the_last_take() -> None:
    window = WindowMax()
    assert window.take() is None
    for value in (3.0, 12.5, 0.5):
        window.observe(value)
    assert window.take() == 12.5
    assert window.take() is None  # taking starts a new window


def test_model_name_is_readable(tmp_path: Path) -> None:
    assert default_model_name("sentence-transformers/all-MiniLM-L6-v2") == BUNDLED_MODEL_ID
    assert default_model_name("org/some-model") == "org/some-model"
    local = tmp_path / "my-classifier"
    local.mkdir()
    assert default_model_name(str(local)) == "my-classifier"
    bundled = bundled_model_dir()
    if bundled is not None:  # the bundled dir is site-packages/.../model: name it by its id
        assert default_model_name(bundled) == BUNDLED_MODEL_ID
        assert WorkerSettings(**QUEUES).model_name == BUNDLED_MODEL_ID
    settings = WorkerSettings(**QUEUES, model=str(local), model_name="x")
    assert settings.model_name == "x"


# ---------------------------------------------------------------------------- real SQS


def gauges(metrics: Metrics) -> dict[tuple[str, str], float | None]:
    registry = metrics.registry
    return {
        (queue, state): registry.get_sample_value(
            "gpuqueue_queue_messages", {"queue": queue, "state": state}
        )
        for queue in ("input", "dlq")
        for state in STATES
    }


def polled(monitor: QueueMonitor) -> dict[tuple[str, str], float | None]:
    """One round by hand, then the gauges (tests poll this with a deadline)."""
    monitor.poll_once()
    return gauges(monitor.metrics)


def errors(metrics: Metrics, queue: str) -> float:
    value = metrics.registry.get_sample_value(
        "gpuqueue_queue_metrics_errors_total", {"queue": queue}
    )
    return value or 0.0


@pytest.fixture
def adapter(sqs_server: Any) -> SqsAdapter:
    return SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)


@pytest.fixture
def monitors() -> Iterator[list[QueueMonitor]]:
    started: list[QueueMonitor] = []
    yield started
    for monitor in started:
        monitor.stop()


def test_gauges_count_the_input_queue_and_its_dlq(
    adapter: SqsAdapter, sqs_client: Any, monitors: list[QueueMonitor]
) -> None:
    queues = make_queues(sqs_client)
    send_bodies(sqs_client, queues.dlq, ["dead-1", "dead-2", "dead-3"])
    send_bodies(sqs_client, queues.input, ["waiting", "taken"])
    sqs_client.send_message(QueueUrl=queues.input, MessageBody="later", DelaySeconds=120)
    wait_for(
        lambda: sqs_client.receive_message(
            QueueUrl=queues.input, MaxNumberOfMessages=1, VisibilityTimeout=120
        ).get("Messages"),
        10,
        "one message taken",
    )
    metrics = Metrics()
    monitor = QueueMonitor(adapter, queues.input, metrics, interval_s=0.2)
    monitors.append(monitor.start())
    expected = {
        ("input", "visible"): 1,
        ("input", "in_flight"): 1,
        ("input", "delayed"): 1,
        ("dlq", "visible"): 3,
        ("dlq", "in_flight"): 0,
        ("dlq", "delayed"): 0,
    }
    wait_for(lambda: gauges(metrics) == expected, 15, f"gauges {expected}")
    assert monitor.dlq_url == queues.dlq  # found through RedrivePolicy -> GetQueueUrl
    # the DLQ drains: the gauge follows (what the "DLQ not empty" alert resolves on)
    for _ in range(3):
        wait_for(
            lambda: [
                sqs_client.delete_message(QueueUrl=queues.dlq, ReceiptHandle=m["ReceiptHandle"])
                for m in sqs_client.receive_message(QueueUrl=queues.dlq).get("Messages", [])
            ],
            10,
            "a DLQ message to delete",
        )
    wait_for(lambda: gauges(metrics)[("dlq", "visible")] == 0, 15, "an empty DLQ")
    assert errors(metrics, "input") == errors(metrics, "dlq") == 0


def test_worker_failures_reach_the_dlq_gauge_and_receives_give_the_age(
    sqs_server: Any, adapter: SqsAdapter, sqs_client: Any
) -> None:
    """The whole path: a worker's transient failures move requests to the DLQ by the queue's own
    redrive policy; the monitor, sharing the worker's metrics, counts them there. The age is the
    oldest receive's (now - SentTimestamp): a message sent with a 2 s delay is >= 2 s old."""
    queues = make_queues(sqs_client, max_receive_count=1)
    sent = time.time()
    send_bodies(
        sqs_client, queues.input, [request("POISON a", id="a"), request("POISON b", id="b")]
    )
    sqs_client.send_message(
        QueueUrl=queues.input, MessageBody=request("fine", id="late"), DelaySeconds=2
    )
    metrics = Metrics()
    settings = WorkerSettings(
        queue_url=queues.input,
        result_queue_url=queues.results,
        receivers=1,
        http_port=0,
        max_wait_ms=5,
        receive_wait_s=1,
    )
    worker = Worker(
        settings, FakeRunner(), adapter, observers=[PrometheusObserver(metrics)], region=REGION
    ).start()
    monitor = QueueMonitor(adapter, queues.input, metrics, interval_s=60)  # rounds by hand
    try:
        ResultReader(sqs_client, queues.results).wait_for(1, timeout=30)
        monitor.poll_once()
        age = metrics.registry.get_sample_value("gpuqueue_oldest_message_age_seconds")
        assert age is not None and 2.0 <= age <= time.time() - sent
        # one receive each, then the redrive policy (maxReceiveCount 1) moves them to the DLQ.
        # Both gauges of one round: a round reads the input queue before the DLQ, so the move can
        # fall between its two reads and show the two requests in both.
        def moved() -> bool:
            round_ = polled(monitor)
            return (round_[("input", "visible")], round_[("dlq", "visible")]) == (0, 2)

        wait_for(
            moved,
            40,
            "the two requests in the DLQ gauge and none left on the input's",
        )
    finally:
        worker.shutdown(timeout_s=5)
    monitor.poll_once()  # nothing received since the last round: no age to report
    assert metrics.registry.get_sample_value("gpuqueue_oldest_message_age_seconds") == 0.0


def test_no_redrive_policy_means_no_dlq_series(adapter: SqsAdapter, sqs_client: Any) -> None:
    queue = sqs_client.create_queue(QueueName=f"plain-{time.time_ns()}")["QueueUrl"]
    send_bodies(sqs_client, queue, ["x"])
    metrics = Metrics()
    monitor = QueueMonitor(adapter, queue, metrics, interval_s=60)
    wait_for(
        lambda: polled(monitor)[("input", "visible")] == 1,
        10,
        "the input gauge",
    )
    assert monitor.dlq_url is None
    assert all(gauges(metrics)[("dlq", state)] is None for state in STATES)


def test_failures_are_logged_and_counted_and_never_stop_the_thread(
    adapter: SqsAdapter,
    sqs_client: Any,
    sqs_server: Any,
    monitors: list[QueueMonitor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a DLQ that was deleted after the redrive policy named it: the input side still works
    queues = make_queues(sqs_client)
    sqs_client.delete_queue(QueueUrl=queues.dlq)
    send_bodies(sqs_client, queues.input, ["x", "y"])
    metrics = Metrics()
    monitor = QueueMonitor(adapter, queues.input, metrics, interval_s=60)
    with caplog.at_level(logging.WARNING, logger="worker.queue_monitor"):
        wait_for(
            lambda: polled(monitor)[("input", "visible")] == 2,
            10,
            "the input gauge",
        )
    assert errors(metrics, "dlq") >= 1 and errors(metrics, "input") == 0
    failure = next(r for r in caplog.records if r.getMessage() == "queue metrics read failed")
    fields = failure.fields  # type: ignore[attr-defined]
    assert fields["queue"] == "dlq" and "NonExistentQueue" in fields["error"]

    # the input queue itself is gone: counted every round, the thread keeps going
    missing = f"{queues.input}-gone"
    broken = QueueMonitor(adapter, missing, Metrics(), interval_s=0.05)
    monitors.append(broken.start())
    wait_for(lambda: errors(broken.metrics, "input") >= 3, 15, "three failed rounds")
    assert broken._thread is not None and broken._thread.is_alive()
    broken.stop()
    assert not broken._thread.is_alive()


def test_interval_zero_is_refused_by_the_monitor() -> None:
    # 0 means "off" in the settings: the CLI does not start a monitor at all
    with pytest.raises(ValueError):
        QueueMonitor(SqsAdapter(control=None),  # type: ignore[arg-type]
                      "https://q.example/1/q", Metrics(), interval_s=0)
    assert WorkerSettings(**QUEUES).queue_metrics_interval_s == 30


def test_with_several_input_queues_the_age_is_the_oldest_received_from_any(
    adapter: SqsAdapter, sqs_client: Any
) -> None:
    """One monitor per input queue, on one Metrics: each round emptied the age window, so the
    second monitor set the gauge to 0 milliseconds after the first set the real age (the
    backlog-age alert fired only when a scrape fell between the two)."""
    from worker.cli import _start_queue_monitor

    high, low = make_queues(sqs_client), make_queues(sqs_client)
    settings = WorkerSettings(
        queue_urls=f"{high.input},{low.input}", result_queue_url=high.results,
        queue_metrics_interval_s=3600, http_port=0,
    )
    metrics = Metrics()
    started = _start_queue_monitor(settings, adapter, metrics)
    assert started is not None and len(started.monitors) == 2
    try:
        wait_for(lambda: all(m.rounds for m in started.monitors), 10, "each first round")
        metrics.observe_queue_wait(1800.0)
        for monitor in started.monitors:  # a round each, as their threads would
            monitor.poll_once()
        age = metrics.registry.get_sample_value("gpuqueue_oldest_message_age_seconds")
        assert age == 1800.0
    finally:
        started.stop(timeout_s=5)
