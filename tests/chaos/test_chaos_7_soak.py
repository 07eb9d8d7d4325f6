"""Chaos 7 — soak: steady load for 30 minutes (`make chaos`; 60 s in `make chaos-quick`). The
worker's RSS and open file descriptors stay flat (start/end reported, after warm-up) and latency
does not grow (median of the last fifth vs the first fifth).

Broken build that fails it: CHAOS_BREAK=leak (1 MiB and one file descriptor per receive).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.conftest import ChaosEntry, pick
from chaos.support.harness import (
    Queues,
    ResultCollector,
    WorkerProcess,
    WorkerSpec,
    drain_queue,
    embed_request,
    env_breaks,
    sentence,
    sqs_client,
)


def test_soak(
    chaos_report: ChaosEntry,
    chaos_queues: Callable[..., Queues],
    worker_factory: Callable[..., WorkerProcess],
    tiny_model_dir: Path,
    fauxqs_server: Any,
    log_dir: Path,
) -> None:
    duration_s = pick(30.0, 45.0, 1800.0)
    rate = 40.0  # requests per second, steady
    warmup_s = min(20.0, duration_s / 4)
    endpoint = fauxqs_server.endpoint_url
    queues = chaos_queues("soak", visibility_s=30, max_receive=10)
    spec = WorkerSpec(queues, tiny_model_dir, endpoint, log_dir, visibility_s=30,
                      extra={"WORKER_SHUTDOWN_TIMEOUT_S": "5"})
    collector = ResultCollector(endpoint, queues.result_url).start()
    worker = worker_factory(spec)
    worker.wait_ready()

    sent_at: dict[str, float] = {}
    stop = threading.Event()

    def produce() -> None:
        sqs = sqs_client(endpoint)
        start, i = time.monotonic(), 0
        while not stop.is_set():
            batch = [(f"soak-{i + k}", sentence(i + k)) for k in range(10)]
            now = time.monotonic()
            sqs.send_message_batch(QueueUrl=queues.request_url, Entries=[
                {"Id": str(k), "MessageBody": embed_request(rid, text)}
                for k, (rid, text) in enumerate(batch)])
            for rid, _ in batch:
                sent_at[rid] = now
            i += 10
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)  # pacing the load generator

    producer = threading.Thread(target=produce, daemon=True)
    t0 = time.monotonic()
    producer.start()
    samples: list[tuple[float, int, int]] = []  # (t, rss, fds)
    while time.monotonic() - t0 < duration_s:
        if not worker.alive:
            break
        samples.append((time.monotonic() - t0, worker.rss_bytes(), worker.open_fds()))
        stop.wait(min(10.0, duration_s / 20))  # sampling period
    stop.set()
    producer.join(10)
    ids = list(sent_at)
    with contextlib.suppress(TimeoutError):  # reported as lost below
        collector.wait_for_ids(set(ids), timeout=60)
    crashes = 0 if worker.alive else 1
    worker.kill()
    collector.stop()
    lost, duplicates = collector.accounting(ids)
    dlq = drain_queue(endpoint, queues.dlq_url)

    steady = [s for s in samples if s[0] >= warmup_s] or samples
    rss_start, rss_end = steady[0][1], steady[-1][1]
    fds_start, fds_end = steady[0][2], steady[-1][2]
    # Start/end alone cannot tell a plateau (allocator arenas filling once) from a slow leak, so
    # the report also carries the curve and the growth over the second half on its own.
    rss_curve = [round(steady[min(len(steady) - 1, k * len(steady) // 10)][1] / 2**20, 1)
                 for k in range(10)] + [round(rss_end / 2**20, 1)]
    rss_mid = steady[len(steady) // 2][1]
    latencies = sorted(
        (sent_at[i], rs[0].received_at - sent_at[i])
        for i in ids if (rs := collector.by_request.get(i))
    )
    fifth = max(1, len(latencies) // 5)
    lat_first = statistics.median(lat for _, lat in latencies[:fifth]) if latencies else 0.0
    lat_last = statistics.median(lat for _, lat in latencies[-fifth:]) if latencies else 0.0

    chaos_report.load = f"{rate:.0f} req/s for {duration_s:.0f}s ({len(ids)} requests)"
    chaos_report.faults = {"none": "steady load",
                           **({"broken_build": list(env_breaks())} if env_breaks() else {})}
    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = lost, duplicates, crashes
    chaos_report.figures = {
        "rss_mib_start_end": [round(rss_start / 2**20, 1), round(rss_end / 2**20, 1)],
        "rss_mib_each_tenth": rss_curve,
        "rss_growth_mib_first_second_half": [round((rss_mid - rss_start) / 2**20, 1),
                                             round((rss_end - rss_mid) / 2**20, 1)],
        "rss_mib_max": round(max(s[1] for s in steady) / 2**20, 1),
        "open_fds_max": max(s[2] for s in steady),
        "open_fds_start_end": [fds_start, fds_end],
        "p50_latency_s_first_last_fifth": [round(lat_first, 3), round(lat_last, 3)],
        "dlq": len(dlq),
    }

    assert crashes == 0 and lost == 0 and not dlq
    # Flat: allowances for allocator noise, not for growth per message.
    assert rss_end - rss_start <= max(30 * 2**20, 0.10 * rss_start), (
        f"RSS grew {rss_start / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB"
    )
    # A plateau (arenas, caches, pools filled once) stops growing; a leak keeps going. Before two
    # per-message records were bounded (the worker's latency list, this launcher's receipt map),
    # the 30-minute run grew 441 -> 462 MiB, about half of it in the second half.
    assert rss_end - rss_mid <= 8 * 2**20, (
        f"RSS still growing in the second half: {rss_mid / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB"
    )
    assert fds_end - fds_start <= 5, f"open fds {fds_start} -> {fds_end}"
    assert lat_last <= 1.5 * lat_first + 0.25, f"latency grew {lat_first:.3f} -> {lat_last:.3f}s"
