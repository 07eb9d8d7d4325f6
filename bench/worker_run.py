"""The harness every worker bench shares: the real `worker.pipeline.Worker` over a local SQS
server, from a pre-filled queue until every request's result is sent and the request deleted,
with its SQS calls counted (and, when asked, each delayed: a cross-cloud round trip), the CPU of
the worker's process and of the server measured, and a sample of results checked against a
reference."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bench.local_env  # noqa: F401  (the environment, before torch and boto3 load)

# isort: split
import boto3
import torch

from worker import devsqs
from worker.config import load_settings
from worker.model import ModelRunner
from worker.pipeline import Worker
from worker.pipeline.observer import NullObserver
from worker.sqs import SqsAdapter

REGION = "us-east-1"

# ------------------------------------------------------------------------------ SQS helpers


def sqs_client(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)


def make_queues(client: Any, tag: str) -> tuple[str, str]:
    suffix = f"{tag}-{time.time_ns() % 10**9}"
    requests = client.create_queue(QueueName=f"bench-requests-{suffix}")["QueueUrl"]
    results = client.create_queue(QueueName=f"bench-results-{suffix}")["QueueUrl"]
    return requests, results


def fill(client: Any, queue_url: str, sentences: Sequence[str | list[str]]) -> None:
    """Enqueue one embed request per sentence (or list of sentences), 10 per SendMessageBatch,
    8 calls in flight."""
    bodies = [
        json.dumps({"id": f"req-{i}", "task": "embed", "inputs": s})
        for i, s in enumerate(sentences)
    ]
    groups = [bodies[i:i + 10] for i in range(0, len(bodies), 10)]

    def send(group: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(group)]
        response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"fill failed: {response['Failed'][:1]}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, groups))


def queue_depth(client: Any, queue_url: str) -> tuple[int, int]:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def check_results(
    client: Any, results_url: str, expected: int, reference: dict[str, list[float]], atol: float
) -> int:
    """Read a sample of results: status ok, and vectors equal to sentence-transformers'."""
    checked = 0
    deadline = time.monotonic() + 10
    while checked < 20 and time.monotonic() < deadline:
        messages = client.receive_message(
            QueueUrl=results_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for message in messages:
            result = json.loads(message["Body"])
            if result.get("status") != "ok":
                raise RuntimeError(f"a result is not ok: {message['Body'][:300]}")
            want = reference.get(result["id"])
            if want is not None:
                got = torch.tensor(result["outputs"][0])
                if not torch.allclose(got, torch.tensor(want), atol=atol):
                    raise RuntimeError(f"result {result['id']} differs from the reference vector")
            checked += 1
    visible, _ = queue_depth(client, results_url)
    if visible + checked < expected:
        raise RuntimeError(f"only {visible + checked} results for {expected} requests")
    return checked


# ------------------------------------------------------------------------------ worker runs


@dataclass
class WorkerRun:
    msgs_s: float
    msgs_per_cpu_s: float  # the worker process and the SQS server together
    seconds: float
    sqs_calls: int
    calls_by_operation: dict[str, int]
    server_cpu_s: float
    summary: dict[str, Any]
    worker_cpu_s: float = 0.0  # the worker's own process alone
    # messages per second between the 10th and the 90th percentile of deletions: the run without
    # its ramp (the first receive, the first batches from a small pool) and its tail (the last
    # batch's send and delete), which cost a fixed time, a larger share of a shorter run
    steady_msgs_s: float = 0.0

    @property
    def worker_cpu_ms_per_msg(self) -> float:
        return self.worker_cpu_s / max(1, self.summary["deleted"]) * 1000

    @property
    def calls_per_message(self) -> float:
        return self.sqs_calls / max(1, self.summary["deleted"])


class Instrumented:
    """A transport that counts the worker's SQS calls by operation and, when asked, sleeps before
    each one (a cross-cloud round trip)."""

    def __init__(self, transport: Any, calls: Counter[str], delay_s: float) -> None:
        self.transport = transport
        self.calls = calls
        self.delay_s = delay_s
        self.region = getattr(transport, "region", REGION)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls[operation] += 1
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        return self.transport.call(operation, params)


class Deletions(NullObserver):
    """When the deletions passed the 10th and the 90th percentile and the last: told by the
    writers as they delete (a poll of the count from the bench's thread would add its own CPU
    to the worker process's, and 10 ms to each time)."""

    def __init__(self, total: int) -> None:
        self.marks = (total // 10, total * 9 // 10, total)
        self.at: list[float] = []
        self.done = threading.Event()
        self._deleted = 0
        self._lock = threading.Lock()

    def written(self, outcomes: Sequence[Any], deleted: Sequence[Any], now: float) -> None:
        with self._lock:
            self._deleted += len(deleted)
            while len(self.at) < 3 and self._deleted >= self.marks[len(self.at)]:
                self.at.append(time.perf_counter())
            if len(self.at) == 3:
                self.done.set()


def run_worker(
    server: devsqs.LocalServer,
    runner: ModelRunner,
    sentences: Sequence[str | list[str]],
    *,
    delay_s: float,
    reference: dict[str, list[float]],
    transports: Callable[[str], tuple[Any, Any]] | None = None,
    max_batch_size: int | None = None,
) -> WorkerRun:
    """The real Worker from a pre-filled queue until every request is deleted. `transports`
    (endpoint -> (control, poll)) replaces the SQS transports (bench/pipeline_overhead.py
    compares boto3's); `max_batch_size` is WORKER_MAX_BATCH_SIZE (its default when None)."""
    admin = sqs_client(server.endpoint_url)
    requests_url, results_url = make_queues(admin, f"w{int(delay_s * 1000)}")
    fill(admin, requests_url, sentences)
    settings = load_settings(
        queue_url=requests_url,
        result_queue_url=results_url,
        model=runner.name,
        device=runner.device.split(":")[0],
        http_port=0,
        log_level="WARNING",
        **({} if max_batch_size is None else {"max_batch_size": max_batch_size}),
    )
    if transports is None:
        adapter = SqsAdapter.from_environment(
            endpoint_url=server.endpoint_url, region_name=REGION
        )
        base = (adapter.control, adapter.poll)
    else:
        base = transports(server.endpoint_url)
    calls: Counter[str] = Counter()
    control = Instrumented(base[0], calls, delay_s)
    poll = Instrumented(base[1], calls, delay_s)
    deletions = Deletions(len(sentences))
    worker = Worker(
        settings, runner, SqsAdapter(control, poll), region=REGION, observers=[deletions]
    )

    # Timed from start() returning: its start-up calls (GetQueueAttributes for the redrive
    # policy and the result queue's size limit, one after the other) happen once per process,
    # and are not the throughput measured (with 50 ms per call, 0.1 s of a 4 s run).
    worker.start()
    cpu_before, process_cpu_before = server.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    deadline = started + max(120.0, len(sentences) / 5.0)
    while not deletions.done.wait(1.0):  # the writers set it: no poll of ours in the CPU measured
        if worker.crashed is not None:
            raise RuntimeError(f"worker crashed: {worker.crashed!r}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"worker too slow: {worker.summary()}")
    elapsed = deletions.at[-1] - started
    low_at, high_at = deletions.at[0], deletions.at[1]
    low, high = deletions.marks[0], deletions.marks[1]
    steady = (high - low) / (high_at - low_at) if high_at > low_at else 0.0
    total_calls = sum(calls.values())
    by_operation = dict(calls)
    server_cpu = server.cpu_seconds() - cpu_before
    process_cpu = time.process_time() - process_cpu_before
    summary = worker.summary()
    # The long polls still out find an empty queue; no need to wait their 20 s out.
    worker.shutdown(timeout_s=2.0)
    visible, in_flight = queue_depth(admin, requests_url)
    if visible or in_flight:
        raise RuntimeError(f"requests left in the queue: {visible} visible, {in_flight} in flight")
    atol = 1e-4 if runner.dtype == "float32" else 2e-2
    check_results(admin, results_url, len(sentences), reference, atol)
    return WorkerRun(
        len(sentences) / elapsed,
        len(sentences) / (process_cpu + server_cpu),
        elapsed,
        total_calls,
        by_operation,
        server_cpu,
        summary,
        process_cpu,
        steady,
    )
