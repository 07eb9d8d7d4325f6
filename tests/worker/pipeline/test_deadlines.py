"""Deadlines in the pipeline, against real local SQS servers: a request past its deadline is
answered DeadlineExceeded and deleted without reaching the model, whether it was late when parsed
or fell late while waiting for its batch; the metric counts each by stage."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from worker_test_helpers import (
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
from worker.seams import Encoded


class RecordingRunner(FakeRunner):
    """FakeRunner that remembers which texts reached encode and which reached the model."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(gate)
        self.encoded_texts: list[str] = []
        self.ran_texts: list[str] = []
        self._texts: dict[int, list[str]] = {}

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        encoded = super().encode(texts, parameters)
        self.encoded_texts += texts
        self._texts[id(encoded)] = texts
        return encoded

    def run(self, prepared: list[Encoded]) -> list[Any]:
        out = super().run(prepared)
        for encoded in prepared:
            self.ran_texts += self._texts[id(encoded)]
        return out


def expired(metrics: Metrics, stage: str) -> float:
    return float(metrics.requests_expired.labels(stage=stage)._value.get())


def outcome_by_id(results: Mapping[str, dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {
        r["id"]: (r["status"], (r.get("error") or {}).get("type")) for r in results.values()
    }


def test_requests_late_when_parsed_are_answered_and_never_encoded(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    runner = RecordingRunner()
    metrics = Metrics()
    bodies = [
        request("past deadline", id="late", deadline=time.time() - 1),
        request("tiny ttl", id="ttl", ttl_s=0.001),  # counted from SentTimestamp
        request("no fields", id="plain"),  # WORKER_DEFAULT_TTL_S applies
        request("long ttl", id="fresh", ttl_s=600),
        request("future deadline", id="future", deadline=time.time() + 600),
    ]
    send_bodies(sqs_client, queues.input, bodies)
    start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, metrics, default_ttl_s=0.001
    )
    results = ResultReader(sqs_client, queues.results).wait_for(len(bodies), timeout=60)
    assert outcome_by_id(results) == {
        "late": ("error", "DeadlineExceeded"),
        "ttl": ("error", "DeadlineExceeded"),
        "plain": ("error", "DeadlineExceeded"),
        "fresh": ("ok", None),
        "future": ("ok", None),
    }
    late = next(r for r in results.values() if r["id"] == "late")
    assert "checked when parsed" in late["error"]["message"]
    assert sorted(runner.encoded_texts) == ["future deadline", "long ttl"]
    assert sorted(runner.ran_texts) == ["future deadline", "long ttl"]
    assert expired(metrics, "parse") == 3 and expired(metrics, "pre_run") == 0
    # answered, so deleted: nothing comes back, nothing dead-letters
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")
    assert counts(sqs_client, queues.dlq) == (0, 0)


def test_a_request_that_expires_waiting_for_its_batch_never_reaches_the_model(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """The model holds a batch; the next one (a request with a deadline a few seconds out and
    one without) is prepared meanwhile. The deadline passes before that batch runs: the late
    request is answered, the batch is prepared again without it, the other one runs."""
    queues = make_queues(sqs_client)
    gate = threading.Event()
    gate.set()
    runner = RecordingRunner(gate)
    metrics = Metrics()
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, metrics,
        max_batch_size=2, max_wait_ms=2000,
    )
    # one batch timed first: before any, the next batch is formed only once the model is free
    send_bodies(sqs_client, queues.input, [request("warm", id="warm")])
    reader = ResultReader(sqs_client, queues.results)
    reader.wait_for(1, timeout=60)
    gate.clear()
    runner.running.clear()
    send_bodies(sqs_client, queues.input, [request("first", id="first")])
    wait_for(runner.running.is_set, 30, "the first batch to reach the model")
    deadline = time.time() + 4.0
    send_bodies(
        sqs_client,
        queues.input,
        [request("doomed", id="doomed", deadline=deadline), request("survivor", id="survivor")],
    )
    wait_for(lambda: len(runner.encoded_texts) == 4, 30, "both requests to pass the parse check")
    wait_for(worker.feeder.handoff.full, 30, "the next batch to be prepared")
    [(prepared_jobs, _)] = list(worker.feeder.handoff.queue)
    assert len(prepared_jobs) == 2  # both in the one batch the deadline check must split
    wait_for(lambda: time.time() > deadline + 0.05, 10, "the deadline to pass")
    gate.set()
    results = reader.wait_for(4, timeout=60)
    assert outcome_by_id(results) == {
        "warm": ("ok", None),
        "first": ("ok", None),
        "survivor": ("ok", None),
        "doomed": ("error", "DeadlineExceeded"),
    }
    doomed = next(r for r in results.values() if r["id"] == "doomed")
    assert "just before its batch ran" in doomed["error"]["message"]
    assert runner.ran_texts == ["warm", "first", "survivor"]
    assert runner.batches == [1, 1, 1]  # the batch of two ran as one, without the late request
    assert expired(metrics, "pre_run") == 1 and expired(metrics, "parse") == 0
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")


