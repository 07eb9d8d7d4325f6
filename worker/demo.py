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
import math
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--messages", type=int, default=3000, help="sentences to enqueue (max 2980)"
    )
    parser.add_argument("--query", default=DEFAULT_QUERY, help="sentence whose neighbours to show")
    return parser


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
    worker = None
    collector = None
    try:
        aws = {
            "endpoint_url": server.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": "demo",
            "aws_secret_access_key": "demo",
        }
        client = boto3.client("sqs", **aws)
        requests_url, results_url, dlq_url = create_queues(client)
        print(
            "  queues: gpuqueue-demo-requests (redrive to gpuqueue-demo-dlq after 3 receives), "
            "gpuqueue-demo-results",
            flush=True,
        )

        sentences = load_sentences(args.messages)
        texts = [(f"s{i}", s) for i, s in enumerate(sentences)] + [("query", args.query)]
        started = time.monotonic()
        sent_at = enqueue(client, requests_url, texts)
        print(f"  enqueued {len(texts)} requests in {time.monotonic() - started:.1f}s", flush=True)

        from worker.config import WorkerSettings
        from worker.model import ModelRunner
        from worker.pipeline import Worker
        from worker.sqs import SqsAdapter

        settings = WorkerSettings(
            queue_url=requests_url,
            result_queue_url=results_url,
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

        # the demo's own session: its dummy credentials, never whatever the environment holds
        session = boto3.Session(
            aws_access_key_id=aws["aws_access_key_id"],
            aws_secret_access_key=aws["aws_secret_access_key"],
            region_name=REGION,
        )
        adapter = SqsAdapter.from_environment(session, endpoint_url=server.endpoint_url)
        collector = Collector(client, results_url, len(texts))
        collector.start()
        cpu_before = server.cpu_seconds()
        t0, t0_wall = time.monotonic(), time.time()
        worker = Worker(settings, runner, adapter, region=REGION).start()
        last_print = 0.0
        while collector.is_alive():
            collector.join(0.5)
            now = time.monotonic()
            if now - last_print >= 2.0 or not collector.is_alive():
                last_print = now
                done = len(collector.results)
                rate = done / (now - t0) if now > t0 else 0.0
                print(
                    f"  progress: {done:5d}/{len(texts)} results  {rate:6.1f} msg/s  "
                    f"held by worker {worker.held:4d}",
                    flush=True,
                )
            if now - t0 > 900:
                print("  giving up after 15 minutes", file=sys.stderr)
                break
        elapsed = max(collector.read_at.values(), default=time.time()) - t0_wall
        worker.shutdown(timeout_s=10)
        summary = worker.summary()
        server_cpu = server.cpu_seconds() - cpu_before
        results = collector.results
        ok = [r for r in results.values() if r["status"] == "ok"]
        latencies = [collector.read_at[rid] - sent_at[rid] for rid in collector.read_at]
        sizes = worker.stats.batch_sizes
        dlq_depth = int(
            client.get_queue_attributes(
                QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        left = int(
            client.get_queue_attributes(
                QueueUrl=requests_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )

        print()
        print("summary")
        print(
            f"  results            {len(results)} ({len(ok)} ok, {len(results) - len(ok)} errors, "
            f"{collector.duplicates} duplicates dropped); input queue left {left}, DLQ {dlq_depth}"
        )
        print(
            f"  throughput         {len(results) / elapsed:.1f} messages/s over {elapsed:.1f}s "
            "(worker start to last result read)"
        )
        print(
            f"  batches            {summary['batches']}: mean size {summary['mean_batch_size']}, "
            f"median {statistics.median(sizes) if sizes else 0}, max {max(sizes, default=0)}"
        )
        print(
            f"  padding ratio      {summary['padding_ratio']} (padded tokens / real tokens; "
            "1.0 = none)"
        )
        print(
            f"  latency in worker  p50 {summary['p50_in_worker_s'] * 1000:.0f} ms, "
            f"p95 {summary['p95_in_worker_s'] * 1000:.0f} ms (received -> result sent and "
            "request deleted)"
        )
        print(
            f"  latency end to end p50 {percentile(latencies, 50):.1f} s, "
            f"p95 {percentile(latencies, 95):.1f} s (enqueue -> result read; all "
            f"{len(texts)} were queued up front, so this is mostly backlog)"
        )
        print(
            f"  SQS calls          {summary['sqs_calls'] / max(1, len(results)):.2f} per message "
            f"(worker side); local SQS server used {server_cpu:.2f} CPU-s"
        )

        by_id = {str(r["id"]): r for r in ok}
        if "query" in by_id:
            query_vector = by_id["query"]["outputs"][0]
            scored = sorted(
                (
                    (cosine(query_vector, by_id[rid]["outputs"][0]), text)
                    for rid, text in texts
                    if rid != "query" and rid in by_id
                ),
                reverse=True,
            )
            print()
            print(f"nearest neighbours of: {args.query!r}")
            for score, text in scored[:5]:
                print(f"  {score:.3f}  {text}")
        complete = len(ok) == len(texts) and left == 0 and dlq_depth == 0
        return 0 if complete else 1
    finally:
        if collector is not None:
            collector.stop.set()
        if worker is not None and not worker.stopped:
            worker.shutdown(timeout_s=10)
        server.stop()
        print("stopped the worker and the local SQS server", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
