"""What priority queues buy, and what starves: a saturated worker with a backlog of low-priority
requests when a burst of high-priority ones arrives.

    .venv/bin/python bench/priority_queues.py [--low 240] [--high 80] [--rounds 3] [--write]

The real pipeline (worker.pipeline.Worker) on fauxqs, with a model that takes a fixed time per
batch (so the worker is the bottleneck, as a busy GPU is). The low backlog is sent first, the
high burst right after; then the worker starts. Side by side in each round (interleaved):

  one-queue   both kinds on one queue: what a user without WORKER_QUEUE_URLS can configure
  strict      WORKER_QUEUE_URLS=high,low: the low queue waits while the high one has work
  weighted    the same with WORKER_QUEUE_WEIGHTS=3,1: the low queue gets 1 receive in 4
  oracle      the bound: high first by construction (the high burst alone on an idle worker)

Figures: completion time (from the worker's start to the result being written) of the high and
the low requests, p50 and p95, and how many low requests were served before the last high one
(what the low queue gets while the high one has work), medians over rounds; ratios against
one-queue. The last line is one
JSON object; --write also stores it in docs/results/priority-queues.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from bench import results
from worker import devsqs
from worker.config import WorkerSettings
from worker.pipeline import Worker
from worker.seams import Encoded
from worker.sqs import SqsAdapter

REGION = "us-east-1"
BATCH_S = 0.04  # the "device" time per batch of up to BATCH requests
BATCH = 8


class TimedModel:
    """A model that takes BATCH_S per batch, whatever it holds."""

    name = "timed"

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        return Encoded([[len(t)] for t in texts])

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> list[Any]:
        return [encoded for encoded, _ in items]

    def run(self, prepared: list[Any]) -> list[Any]:
        time.sleep(BATCH_S)
        return [[1] for _ in prepared]


class Recorder:
    """Notes when each request ran, by the kind its id names (an observer: written())."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None

    def written(self, outcomes: Sequence[Any], deleted: Sequence[Any], now: float) -> None:
        stamp = time.monotonic()
        for o in outcomes:
            rid = (o.result or {}).get("id") or ""
            self.done.append((rid.split("-")[0], stamp))


def send(sqs: Any, url: str, kind: str, n: int) -> None:
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"id": f"{kind}-{start + i}", "inputs": "x"})}
            for i in range(min(10, n - start))
        ])


def one_round(endpoint: str, mode: str, n_low: int, n_high: int) -> dict[str, float]:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    tag = uuid.uuid4().hex[:8]
    high = sqs.create_queue(QueueName=f"bench-high-{tag}")["QueueUrl"]
    low = high
    if mode != "one-queue":
        low = sqs.create_queue(QueueName=f"bench-low-{tag}")["QueueUrl"]
    results = sqs.create_queue(QueueName=f"bench-out-{tag}")["QueueUrl"]
    if mode != "oracle":
        send(sqs, low, "low", n_low)
    send(sqs, high, "high", n_high)
    queues: dict[str, Any] = (
        {"queue_url": high} if low == high else {"queue_urls": f"{high},{low}"}
    )
    if mode == "weighted":
        queues["queue_weights"] = "3,1"
    settings = WorkerSettings(
        **queues, result_queue_url=results, http_port=0, max_batch_size=BATCH, buffer_max=16,
        max_wait_ms=5, receive_wait_s=1, receivers=2,
    )
    recorder = Recorder()
    adapter = SqsAdapter.from_environment(endpoint_url=endpoint, region_name=REGION)
    worker = Worker(settings, TimedModel(), adapter, observers=[recorder], region=REGION)
    t0 = time.monotonic()
    worker.start()
    total = n_high + (0 if mode == "oracle" else n_low)
    while len(recorder.done) < total and time.monotonic() - t0 < 300:
        time.sleep(0.05)
    worker.shutdown(timeout_s=5)
    out: dict[str, float] = {}
    for kind in ("high", "low"):
        times = sorted(t - t0 for k, t in recorder.done if k == kind)
        if times:
            out[f"{kind}_p50_s"] = round(statistics.median(times), 3)
            out[f"{kind}_p95_s"] = round(times[int(0.95 * (len(times) - 1))], 3)
    if mode != "oracle":  # what starves: low requests served while high ones still waited
        last_high = max(t for k, t in recorder.done if k == "high")
        out["low_done_before_high_cleared"] = sum(
            1 for k, t in recorder.done if k == "low" and t < last_high
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--low", type=int, default=240)
    ap.add_argument("--high", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="store docs/results/priority-queues.json")
    args = ap.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[key] = "bench"  # a local emulator: never a real account
    os.environ["AWS_DEFAULT_REGION"] = REGION
    modes = ("one-queue", "strict", "weighted", "oracle")
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with devsqs.running("fauxqs") as server:
        for r in range(args.rounds):
            for mode in modes:  # interleaved: a slow spell of the machine hits every mode
                rounds[mode].append(one_round(server.endpoint_url, mode, args.low, args.high))
                print(f"round {r + 1} {mode}: {rounds[mode][-1]}", file=sys.stderr)
    medians = {
        m: {k: round(statistics.median(x[k] for x in rs), 3) for k in rs[0]}
        for m, rs in rounds.items()
    }
    base = medians["one-queue"]["high_p50_s"]
    report = {
        "load": {"low_backlog": args.low, "high_burst": args.high, "batch": BATCH,
                 "batch_s": BATCH_S, "rounds": args.rounds},
        "medians": medians,
        "high_p50_speedup_vs_one_queue": {
            m: round(base / medians[m]["high_p50_s"], 2) for m in ("strict", "weighted", "oracle")
        },
        "low_p50_slowdown_vs_one_queue": {
            m: round(medians[m]["low_p50_s"] / medians["one-queue"]["low_p50_s"], 2)
            for m in ("strict", "weighted")
        },
    }
    if args.write:
        results.write("priority-queues", report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
