"""The worker end to end with real parts: real transformers models (a tiny random BERT, the bundled
MiniLM for the process test), real local SQS servers (each test on fauxqs and on moto), moto's S3,
and `python -m worker` as a real process for the SIGTERM drain."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from worker_test_helpers import (
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    unique,
    wait_for,
)

from worker.config import BUNDLED_MODEL_ID, WorkerSettings
from worker.devsqs import free_port
from worker.metrics import Metrics, PrometheusObserver
from worker.model import ModelRunner
from worker.pipeline import Worker
from worker.s3 import ClaimCheckStore
from worker.seams import Encoded, ModelFailure
from worker.sqs import SqsAdapter

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SENTENCES = [
    "The cat sat on the warm windowsill.",
    "Queues decouple the producers from the workers.",
    "A long sentence about the weather, which was grey and wet all week, and the trains were late.",
    "GPUs are fast.",
    "She planted tomatoes, beans and a row of sunflowers along the fence behind the house.",
]


@pytest.fixture(scope="module")
def tiny_runner(tiny_embed_model: Path) -> ModelRunner:
    return ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if not worker.stopped:
            worker.shutdown(timeout_s=5)


def start(
    endpoint: str,
    runner: Any,
    started: list[Worker],
    claim_check: Any = None,
    metrics: Metrics | None = None,
    **settings: Any,
) -> Worker:
    worker = Worker(
        WorkerSettings(http_port=0, receivers=2, receive_wait_s=2, **settings),
        runner,
        SqsAdapter.from_environment(endpoint_url=endpoint, region_name=REGION),
        claim_check=claim_check,
        observers=[PrometheusObserver(metrics)] if metrics is not None else [],
        region=REGION,
    )
    started.append(worker)
    return worker.start()


def test_end_to_end_results_queue_empty_dlq_empty(
    sqs_server: Any, sqs_client: Any, tiny_runner: ModelRunner, workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    n = 40
    bodies = [request(SENTENCES[i % len(SENTENCES)], id=f"r{i}") for i in range(n - 1)]
    bodies.append(request(SENTENCES[:3], id="multi"))
    ids = send_bodies(sqs_client, queues.input, bodies)
    worker = start(
        sqs_server.endpoint_url,
        tiny_runner,
        workers,
        queue_url=queues.input,
        result_queue_url=queues.results,
    )
    reader = ResultReader(sqs_client, queues.results)
    results = reader.wait_for(n, timeout=60)
    assert set(results) == set(ids)
    by_id = {r["id"]: r for r in results.values()}
    assert all(r["status"] == "ok" for r in results.values())
    assert len(by_id["multi"]["outputs"]) == 3
    for result in results.values():
        for vector in result["outputs"]:
            assert len(vector) == 32  # the tiny BERT's width
            assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    # batched (padded, sorted) outputs equal the model run on one request alone
    alone = tiny_runner.run(tiny_runner.prepare([(tiny_runner.encode([SENTENCES[2]], {}), {})]))[0]
    assert by_id["r2"]["outputs"][0] == pytest.approx(alone[0], abs=1e-5)
    assert by_id["r2"]["model"] == tiny_runner.name
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")
    assert counts(sqs_client, queues.dlq) == (0, 0)
    assert reader.duplicates == 0
    assert worker.summary()["batches"] < n  # requests were batched


class PoisonOnce:
    """The real model, with one request that makes it fail every time (a model error, not bad
    input), as a corrupt input or a model bug would."""

    def __init__(self, runner: ModelRunner, marker: str) -> None:
        self.runner = runner
        self.name = runner.name
        self.marker = marker
        self._poisoned: set[int] = set()

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        encoded = self.runner.encode(texts, parameters)
        if any(self.marker in t for t in texts):
            self._poisoned.add(id(encoded))
        return encoded

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> Any:
        return self.runner.prepare(items)

    def run(self, prepared: Any) -> list[Any]:
        outputs = self.runner.run(prepared)
        return [
            ModelFailure("ModelError", "device-side assert triggered")
            if id(encoded) in self._poisoned
            else output
            for (encoded, _), output in zip(prepared.items, outputs, strict=True)
        ]


def test_poison_message_reaches_dlq_after_max_receive_count(
    sqs_server: Any, sqs_client: Any, tiny_runner: ModelRunner, workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, max_receive_count=2)
    good = [request(s, id=f"g{i}") for i, s in enumerate(SENTENCES)]
    send_bodies(sqs_client, queues.input, [*good, request("POISON request", id="poison")])
    start(
        sqs_server.endpoint_url,
        PoisonOnce(tiny_runner, "POISON"),
        workers,
        queue_url=queues.input,
        result_queue_url=queues.results,
    )
    reader = ResultReader(sqs_client, queues.results)
    reader.wait_for(len(good), timeout=60)
    wait_for(lambda: counts(sqs_client, queues.dlq)[0] == 1, 45, "the poison message in the DLQ")
    dead = sqs_client.receive_message(
        QueueUrl=queues.dlq, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"][0]
    assert json.loads(dead["Body"])["id"] == "poison"
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")
    reader.poll(wait_s=0)
    assert sorted(r["id"] for r in reader.results.values()) == sorted(f"g{i}" for i in range(5))


def test_large_result_goes_to_s3_as_an_extended_client_pointer(
    sqs_server: Any,
    sqs_client: Any,
    s3_client: Any,
    tiny_runner: ModelRunner,
    workers: list[Worker],
) -> None:
    # 1024 bytes is the smallest MaximumMessageSize SQS allows: 20 vectors of 32 floats exceed it
    queues = make_queues(sqs_client, result_max_size=1024)
    bucket = unique("results")
    s3_client.create_bucket(Bucket=bucket)
    ids = send_bodies(
        sqs_client,
        queues.input,
        [request(SENTENCES * 4, id="large"), request("hi", id="small", parameters={})],
    )
    start(
        sqs_server.endpoint_url,
        tiny_runner,
        workers,
        claim_check=ClaimCheckStore(s3_client, bucket, "gpuqueue/"),
        queue_url=queues.input,
        result_queue_url=queues.results,
        result_s3_uri=f"s3://{bucket}/gpuqueue",
    )
    reader = ResultReader(sqs_client, queues.results, s3_client=s3_client)
    results = reader.wait_for(2, timeout=60)
    assert reader.pointers == 1  # only the large one was offloaded
    by_id = {r["id"]: r for r in results.values()}
    assert by_id["large"]["message_id"] == ids[0]
    assert len(by_id["large"]["outputs"]) == 20
    assert len(by_id["small"]["outputs"]) == 1
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("gpuqueue/")


def test_large_result_without_s3_is_a_clear_error(
    sqs_server: Any, sqs_client: Any, tiny_runner: ModelRunner, workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, result_max_size=1024)
    send_bodies(sqs_client, queues.input, [request(SENTENCES * 4, id="large")])
    start(
        sqs_server.endpoint_url,
        tiny_runner,
        workers,
        queue_url=queues.input,
        result_queue_url=queues.results,
    )
    [result] = ResultReader(sqs_client, queues.results).wait_for(1, timeout=60).values()
    assert result["error"]["type"] == "ResultTooLarge"
    assert "WORKER_RESULT_S3_URI" in result["error"]["message"]
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")


# ------------------------------------------------------------------ the real process


def _http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


LONG_TEXT = (
    "The committee met on a cold Tuesday morning to discuss the budget for the coming year, "
    "and after a long debate about roads, schools, libraries and the new swimming pool, "
    "they agreed to meet again the following week to vote on the final plan. "
) * 2


def test_sigterm_drains_and_exits_zero(sqs_server: Any, sqs_client: Any) -> None:
    """`python -m worker` with the bundled MiniLM: ready only after warm-up, JSON log line per
    batch, and on SIGTERM: the batch in hand finishes, the rest is visible again at once, exit 0."""
    queues = make_queues(sqs_client, visibility_s=120)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKER_")},
        "AWS_ENDPOINT_URL": sqs_server.endpoint_url,
        "WORKER_QUEUE_URL": queues.input,
        "WORKER_RESULT_QUEUE_URL": queues.results,
        "WORKER_HTTP_PORT": str(port),
        "WORKER_MAX_BATCH_SIZE": "2",
        "WORKER_VISIBILITY_TIMEOUT_S": "120",
        "WORKER_DEVICE": "cpu",
        "WORKER_RECEIVE_WAIT_S": "2",
        "WORKER_QUEUE_METRICS_INTERVAL_S": "0.5",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: _http(port, "/healthz")[0] == 200, 60, "/healthz")
        wait_for(lambda: _http(port, "/readyz")[0] == 200, 120, "/readyz after warm-up")
        assert "gpuqueue_ready 1.0" in _http(port, "/metrics")[1]
        n = 40
        ids = send_bodies(
            sqs_client, queues.input, [request([LONG_TEXT] * 6, id=f"r{i}") for i in range(n)]
        )
        reader = ResultReader(sqs_client, queues.results)
        reader.wait_for(1, timeout=60)
        metrics = _http(port, "/metrics")[1]
        assert "gpuqueue_batch_size_count" in metrics
        # the queue monitor runs in the process: the DLQ found from the redrive policy
        wait_for(
            lambda: 'gpuqueue_queue_messages{queue="dlq",state="visible"} 0.0'
            in _http(port, "/metrics")[1],
            20,
            "the DLQ depth gauge",
        )
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=40)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == 0, stderr[-3000:]
    exited = time.monotonic()
    reader.poll(wait_s=0)
    while reader.poll(wait_s=0):
        pass
    done = len(reader.results)
    assert 1 <= done < n
    # results name the bundled model by its id, not by its site-packages path
    assert {r["model"] for r in reader.results.values()} == {BUNDLED_MODEL_ID}
    # released with visibility 0, so visible now rather than after the 120 s timeout
    _visible, _in_flight = wait_for(
        lambda: (c := counts(sqs_client, queues.input)) == (n - done, 0) and c, 10, "released"
    )
    assert time.monotonic() - exited < 10
    left = boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    seen: set[str] = set()
    receive_counts: list[int] = []

    def receive_rest() -> bool:
        response = left.receive_message(
            QueueUrl=queues.input, MaxNumberOfMessages=10, AttributeNames=["All"]
        )
        for m in response.get("Messages", []):
            seen.add(m["MessageId"])
            receive_counts.append(int(m["Attributes"]["ApproximateReceiveCount"]))
        return len(seen) >= n - done

    try:
        wait_for(receive_rest, 20, "the released messages")
    except AssertionError as exc:
        # seen once in CI (moto) after the released counts above were right: say whether the
        # missing ones went to the DLQ (a drain re-receive costs a receive count each)
        # (and whether they are in flight again: a poll of ours outliving the process)
        drained = [line for line in stderr.splitlines() if '"drained"' in line]
        raise AssertionError(
            f"{exc}: {len(seen)} of {n - done} received, receive counts "
            f"{sorted(receive_counts)}, DLQ (visible, in flight) {counts(sqs_client, queues.dlq)}"
            f", input {counts(sqs_client, queues.input)}, drain log {drained}"
        ) from exc
    assert seen | set(reader.results) == set(ids)  # nothing lost, nothing answered twice
    assert not seen & set(reader.results)
    # structured logs: every line JSON, one "batch" line per model batch
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    batches = [line for line in lines if line["msg"] == "batch"]
    assert batches and all(b["size"] <= 2 for b in batches)
    assert sum(b["ok"] for b in batches) == done
    [drained] = [line for line in lines if line["msg"] == "drained"]
    assert drained["still_running"] == []  # every stage ended within the drain's budget


def test_claim_check_write_failure_leaves_the_request_and_recovers(
    sqs_server: Any,
    sqs_client: Any,
    s3_client: Any,
    tiny_runner: ModelRunner,
    workers: list[Worker],
) -> None:
    """S3 refuses the write (the bucket is missing): the request is not deleted, it comes back
    after a short back-off, and once S3 works it is answered; the small result is unaffected."""
    queues = make_queues(sqs_client, result_max_size=1024)
    bucket = unique("later")
    send_bodies(
        sqs_client, queues.input, [request(SENTENCES * 4, id="large"), request("hi", id="small")]
    )
    metrics = Metrics()
    start(
        sqs_server.endpoint_url,
        tiny_runner,
        workers,
        claim_check=ClaimCheckStore(s3_client, bucket, ""),
        metrics=metrics,
        queue_url=queues.input,
        result_queue_url=queues.results,
        result_s3_uri=f"s3://{bucket}",
    )
    reader = ResultReader(sqs_client, queues.results, s3_client=s3_client)
    reader.wait_for(1, timeout=60)
    assert [r["id"] for r in reader.results.values()] == ["small"]
    failed = metrics.failed.labels(error_type="ResultWriteFailed", final="false")
    wait_for(lambda: failed._value.get() >= 1, 30, "a failed claim-check write")
    s3_client.create_bucket(Bucket=bucket)
    reader.wait_for(2, timeout=60)
    assert reader.pointers == 1
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "input queue empty")
    assert counts(sqs_client, queues.dlq) == (0, 0)
