"""Chaos 4 — slow model: some forward passes take 3x the visibility timeout. Heartbeats keep every
held message invisible, so nothing is processed twice: each slow request reaches the model exactly
once (counted inside the worker process, per forward row), and each request has one result.

Broken build that fails it: CHAOS_BREAK=no_heartbeat (visibility extensions dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.conftest import ChaosEntry, pick
from chaos.support.faultproxy import FaultPlan, FaultProxy
from chaos.support.harness import (
    SLOW_WORD,
    Queues,
    ResultCollector,
    WorkerProcess,
    WorkerSpec,
    drain_queue,
    embed_request,
    env_breaks,
    read_forward_log,
    send_bodies,
    sentence,
    wait_for,
)


def test_slow_model_heartbeats(
    chaos_report: ChaosEntry,
    chaos_queues: Callable[..., Queues],
    worker_factory: Callable[..., WorkerProcess],
    tiny_model_dir: Path,
    fauxqs_server: Any,
    log_dir: Path,
) -> None:
    visibility_s = 4
    slow_s = 3 * visibility_s
    n_slow = pick(3, 5, 20)
    n_fast = pick(30, 100, 1000)
    endpoint = fauxqs_server.endpoint_url
    queues = chaos_queues("slow", visibility_s=visibility_s, max_receive=5)
    forward_log = log_dir / "forward.jsonl"
    # A proxy with faults off: it only counts the worker's calls (heartbeats among them).
    counter = FaultProxy(endpoint, FaultPlan(enabled=False)).start()
    spec = WorkerSpec(
        queues, tiny_model_dir, counter.endpoint_url, log_dir, visibility_s=visibility_s,
        forward_log=forward_log, slow_s=slow_s,
        # one slow request per batch: each slow batch holds everything behind it for slow_s
        extra={"WORKER_MAX_BATCH_SIZE": "4", "WORKER_SHUTDOWN_TIMEOUT_S": "5"},
    )
    slow_ids = [f"slow-{i}" for i in range(n_slow)]
    fast_ids = [f"fast-{i}" for i in range(n_fast)]
    bodies = [(rid, embed_request(rid, f"{sentence(i)} {SLOW_WORD}"))
              for i, rid in enumerate(slow_ids)]
    bodies += [(rid, embed_request(rid, sentence(i))) for i, rid in enumerate(fast_ids)]
    ids = slow_ids + fast_ids
    chaos_report.load = (
        f"{n_slow} requests whose forward pass takes {slow_s}s (visibility {visibility_s}s) "
        f"among {n_fast} fast ones"
    )
    collector = ResultCollector(endpoint, queues.result_url).start()
    worker = worker_factory(spec)
    worker.wait_ready()
    started = time.time()
    send_bodies(endpoint, queues.request_url, bodies)

    def alive() -> None:
        if not worker.alive:
            raise AssertionError(f"worker exited:\n{worker.tail()}")

    try:
        collector.wait_for_ids(set(ids), timeout=n_slow * slow_s + 60, alive=alive)
        wait_for(lambda: queues.counts(queues.request_url) == (0, 0), 20, 0.2, "empty queue")
    except TimeoutError:
        pass  # reported below
    crashes = 0 if worker.alive else 1
    worker.kill()
    collector.stop()
    counter.stop()
    rows, markers = read_forward_log(forward_log, since=started)
    lost, duplicates = collector.accounting(ids)
    dlq = drain_queue(endpoint, queues.dlq_url)
    left = queues.counts(queues.request_url)
    heartbeat_calls = (
        counter.stats.calls["ChangeMessageVisibilityBatch"]
        + counter.stats.calls["ChangeMessageVisibility"]
    )

    chaos_report.faults = {"slow_forward_s": slow_s, "visibility_s": visibility_s,
                           **({"broken_build": list(env_breaks())} if env_breaks() else {})}
    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = lost, duplicates, crashes
    chaos_report.figures = {
        "slow_rows_on_model": markers[SLOW_WORD], "rows_on_model": rows,
        "dlq": len(dlq), "left_on_queue": list(left), "visibility_calls": heartbeat_calls,
    }

    assert crashes == 0
    assert markers[SLOW_WORD] == n_slow, (
        f"slow requests ran on the model {markers[SLOW_WORD]} times for {n_slow} requests"
    )
    assert rows == len(ids), f"{rows} rows ran on the model for {len(ids)} requests"
    assert lost == 0 and duplicates == 0
    assert not dlq and left == (0, 0)
