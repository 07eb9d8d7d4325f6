"""`make demo`: the whole product on one machine, no cloud account.

Starts the local SQS server (fauxqs), creates an input queue with a dead-letter queue and a result
queue, enqueues a few thousand real sentences, runs the worker on CPU with the bundled
all-MiniLM-L6-v2, shows progress, prints a summary and the nearest neighbours of a sentence as a
result a person can check, then stops everything it started.

    python -m worker.demo [--messages N] [--query "a sentence"]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.demo_report import print_neighbours, print_summary

if TYPE_CHECKING:
    from worker.config import WorkerSettings
    from worker.model import ModelRunner
    from worker.pipeline import Worker

SENTENCES_FILE = Path(__file__).with_name("demo_sentences.txt")
DEFAULT_QUERY = "A kitten dozed in a sunny spot by the window."
REGION = "us-east-1"


def load_sentences(limit: int) -> list[str]:
    lines = [line.strip() for line in SENTENCES_FILE.read_text(encoding="utf-8").splitlines()]
    sentences = [line for line in lines if line and not line.startswith("#")]
    return sentences[:limit]


def create_queues(client: Any) -> tuple[str, str, str]:
    dlq = client.create_queue(QueueName="gpuqueue-demo-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    requests = client.create_queue(
        QueueName="gpuqueue-demo-requests",
        Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60"},
    )["QueueUrl"]
    results = client.create_queue(QueueName="gpuqueue-demo-results")["QueueUrl"]
    return requests, results, dlq


def enqueue(client: Any, queue_url: str, texts: list[tuple[str, str]]) -> dict[str, float]:
    """Send (id, text) requests 10 per call on a few threads; returns the send time per id."""
    sent_at: dict[str, float] = {}

    def send(chunk: list[tuple[str, str]]) -> None:
        entries = [
            {"Id": str(i), "MessageBody": json.dumps({"id": rid, "inputs": text})}
            for i, (rid, text) in enumerate(chunk)
        ]
        response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"enqueue failed: {response['Failed'][:1]}")
        now = time.time()
        for rid, _ in chunk:
            sent_at[rid] = now

    chunks = [texts[i : i + 10] for i in range(0, len(texts), 10)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, chunks))
    return sent_at


class Collector(threading.Thread):
    """Reads the result queue like a consumer: deletes what it read, drops duplicates by the
    gpuqueue-message-id attribute."""

    def __init__(self, client: Any, queue_url: str, expected: int) -> None:
        super().__init__(name="demo-results", daemon=True)
        self.client, self.queue_url, self.expected = client, queue_url, expected
        self.results: dict[str, dict[str, Any]] = {}
        self.read_at: dict[str, float] = {}
        self.duplicates = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            while not self.stop.is_set() and len(self.results) < self.expected:
                response = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                )
                messages = response.get("Messages", [])
                now = time.time()
                for message in messages:
                    key = message["MessageAttributes"]["gpuqueue-message-id"]["StringValue"]
                    if key in self.results:
                        self.duplicates += 1
                        continue
                    result = json.loads(message["Body"])
                    self.results[key] = result
                    self.read_at[str(result["id"])] = now
                if messages:
                    entries = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ]
                    pool.submit(
                        self.client.delete_message_batch, QueueUrl=self.queue_url, Entries=entries
                    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--messages", type=int, default=3000, help="sentences to enqueue (max 2980)"
    )
    parser.add_argument("--query", default=DEFAULT_QUERY, help="sentence whose neighbours to show")
    return parser


@dataclass(frozen=True)
class DemoQueues:
    requests: str
    results: str
    dlq: str


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # The local server takes any credentials; dummy ones keep a real AWS account out of the demo.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import boto3

    from worker import logs
    from worker.devsqs import start_fauxqs

    logs.configure("WARNING")  # the demo prints its own progress; batch lines go to the JSON log
    print("gpuqueue demo: local SQS (fauxqs) + CPU worker + bundled all-MiniLM-L6-v2", flush=True)
    server = start_fauxqs()
    print(f"  local SQS listening on {server.endpoint_url}", flush=True)
    worker: Worker | None = None
    collector = None
    try:
        # the demo's own session: its dummy credentials, never whatever the environment holds
        session = boto3.Session(
            aws_access_key_id="demo", aws_secret_access_key="demo", region_name=REGION
        )
        client = session.client("sqs", endpoint_url=server.endpoint_url)
        queues = DemoQueues(*create_queues(client))
        print(
            "  queues: gpuqueue-demo-requests (redrive to gpuqueue-demo-dlq after 3 receives), "
            "gpuqueue-demo-results",
            flush=True,
        )
        sentences = load_sentences(args.messages)
        texts = [(f"s{i}", s) for i, s in enumerate(sentences)] + [("query", args.query)]
        started = time.monotonic()
        sent_at = enqueue(client, queues.requests, texts)
        print(f"  enqueued {len(texts)} requests in {time.monotonic() - started:.1f}s", flush=True)

        settings, runner = _settings_and_runner(queues)
        from worker.pipeline import Worker
        from worker.sqs import SqsAdapter

        adapter = SqsAdapter.from_environment(session, endpoint_url=server.endpoint_url)
        collector = Collector(client, queues.results, len(texts))
        collector.start()
        cpu_before = server.cpu_seconds()
        t0_wall = time.time()
        worker = Worker(settings, runner, adapter, region=REGION).start()
        _show_progress(collector, worker, len(texts))
        elapsed = max(collector.read_at.values(), default=time.time()) - t0_wall
        worker.shutdown(timeout_s=10)
        left, dlq_depth = _depth(client, queues.requests), _depth(client, queues.dlq)
        ok = [r for r in collector.results.values() if r["status"] == "ok"]
        print_summary(
            worker,
            collector,
            sent_at,
            elapsed=elapsed,
            server_cpu_s=server.cpu_seconds() - cpu_before,
            left=left,
            dlq_depth=dlq_depth,
        )
        print_neighbours(args.query, texts, {str(r["id"]): r for r in ok})
        complete = len(ok) == len(texts) and left == 0 and dlq_depth == 0
        return 0 if complete else 1
    finally:
        if collector is not None:
            collector.stop.set()
        if worker is not None and not worker.stopped:
            worker.shutdown(timeout_s=10)
        server.stop()
        print("stopped the worker and the local SQS server", flush=True)


def _settings_and_runner(queues: DemoQueues) -> tuple[WorkerSettings, ModelRunner]:
    """The worker's settings for the demo's queues, and the bundled model loaded and warmed up."""
    from worker.config import WorkerSettings
    from worker.model import ModelRunner

    settings = WorkerSettings(
        queue_url=queues.requests,
        result_queue_url=queues.results,
        device="cpu",
        http_port=0,
        # the queue is empty at the end; a short poll keeps the final drain quick
        receive_wait_s=2,
    )
    loading = time.monotonic()
    runner = ModelRunner.load(settings.model, settings.task, settings.device, settings.dtype)
    runner.warm_up()
    print(
        f"  model loaded and warmed up in {time.monotonic() - loading:.1f}s "
        f"({runner.device}, {runner.dtype}, {runner.max_input_tokens} tokens max)",
        flush=True,
    )
    return settings, runner


def _show_progress(collector: Collector, worker: Worker, total: int) -> None:
    """A progress line every 2 s until every result is read (or 15 minutes pass)."""
    t0 = time.monotonic()
    last_print = 0.0
    while collector.is_alive():
        collector.join(0.5)
        now = time.monotonic()
        if now - last_print >= 2.0 or not collector.is_alive():
            last_print = now
            done = len(collector.results)
            rate = done / (now - t0) if now > t0 else 0.0
            print(
                f"  progress: {done:5d}/{total} results  {rate:6.1f} msg/s  "
                f"held by worker {worker.held:4d}",
                flush=True,
            )
        if now - t0 > 900:
            print("  giving up after 15 minutes", file=sys.stderr)
            return


def _depth(client: Any, queue_url: str) -> int:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


if __name__ == "__main__":
    raise SystemExit(main())
