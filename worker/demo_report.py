"""The demo's closing report: the summary of a run, and the nearest neighbours of its query."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.demo import Collector
    from worker.pipeline import Worker


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


def print_summary(
    worker: Worker,
    collector: Collector,
    sent_at: dict[str, float],
    *,
    elapsed: float,
    server_cpu_s: float,
    left: int,
    dlq_depth: int,
) -> None:
    summary = worker.summary()
    results = collector.results
    ok = sum(1 for r in results.values() if r["status"] == "ok")
    latencies = [collector.read_at[rid] - sent_at[rid] for rid in collector.read_at]
    sizes = worker.stats.batch_sizes
    print()
    print("summary")
    print(
        f"  results            {len(results)} ({ok} ok, {len(results) - ok} errors, "
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
        f"{len(sent_at)} were queued up front, so this is mostly backlog)"
    )
    print(
        f"  SQS calls          {summary['sqs_calls'] / max(1, len(results)):.2f} per message "
        f"(worker side); local SQS server used {server_cpu_s:.2f} CPU-s"
    )


def print_neighbours(
    query: str, texts: list[tuple[str, str]], ok_by_id: dict[str, dict[str, Any]]
) -> None:
    """The five sentences nearest the query: a result a person can check by reading it."""
    if "query" not in ok_by_id:
        return
    query_vector = ok_by_id["query"]["outputs"][0]
    scored = sorted(
        (
            (cosine(query_vector, ok_by_id[rid]["outputs"][0]), text)
            for rid, text in texts
            if rid != "query" and rid in ok_by_id
        ),
        reverse=True,
    )
    print()
    print(f"nearest neighbours of: {query!r}")
    for score, text in scored[:5]:
        print(f"  {score:.3f}  {text}")
