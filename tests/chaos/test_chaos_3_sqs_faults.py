"""Chaos 3 — SQS faults: the worker talks to SQS through a fault-injecting proxy that throttles,
answers 500/503, resets connections (before and after SQS applied the call), delays calls and
half-fails batch calls (HTTP 200 with `Failed` entries). Then a full outage (every call 503), then
no faults. Zero lost, the same worker process runs throughout, retries back off during the
outage, and throughput comes back when the faults stop.

Broken build that fails it: CHAOS_BREAK=ignore_failed (Failed entries treated as sent).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.conftest import ChaosEntry, pick
from chaos.support.faultproxy import FaultPlan, FaultProxy
from chaos.support.harness import (
    Queues,
    ResultCollector,
    WorkerProcess,
    WorkerSpec,
    drain_queue,
    embed_request,
    env_breaks,
    send_bodies,
    sentence,
    wait_for,
)

# A fixed count (WORKER_MAX_RECEIVERS too): the clean and the recovered rates are compared, and
# with the fast tiny model grown receivers (32 within 0.2 s of the clean phase) end at the outage
# and grow back only as full receives return, so the two phases would run different workers.
# tests/worker/pipeline/test_receivers.py covers growth, the end at a failure and the regrowth.
RECEIVERS = 4
FAULTS = FaultPlan(
    throttle=0.05,
    http500=0.03,
    http503=0.03,
    reset_before=0.03,
    reset_after=0.02,
    delay=0.25,
    delay_s=(0.05, 0.4),
    partial=0.3,
)


@pytest.mark.chaos_smoke
def test_sqs_faults(
    chaos_report: ChaosEntry,
    chaos_queues: Callable[..., Queues],
    worker_factory: Callable[..., WorkerProcess],
    tiny_model_dir: Path,
    fauxqs_server: Any,
    log_dir: Path,
) -> None:
    n_clean = pick(400, 800, 3000)
    n_faults = pick(300, 1200, 8000)
    outage_s = pick(4.0, 8.0, 20.0)
    visibility_s = int(os.environ.get("CHAOS_FAULTS_VISIBILITY_S", "0")) or pick(5, 8, 10)
    endpoint = fauxqs_server.endpoint_url
    queues = chaos_queues("faults", visibility_s=visibility_s, max_receive=10)
    proxy = FaultProxy(endpoint, FaultPlan(enabled=False), seed=5).start()
    spec = WorkerSpec(
        queues, tiny_model_dir, proxy.endpoint_url, log_dir, visibility_s=visibility_s,
        extra={"WORKER_RECEIVERS": str(RECEIVERS), "WORKER_MAX_RECEIVERS": str(RECEIVERS),
               "WORKER_SHUTDOWN_TIMEOUT_S": "5"},
    )
    collector = ResultCollector(endpoint, queues.result_url).start()
    worker = worker_factory(spec)
    all_ids: list[str] = []

    def alive() -> None:
        if not worker.alive:
            raise AssertionError(f"worker exited ({worker.process.returncode}):\n{worker.tail()}")

    timed_out: list[str] = []

    def phase(name: str, n: int, timeout: float) -> tuple[float, float]:
        """Send n requests and wait for every result. Returns (messages per second while flowing:
        between the 10th and 80th percentile of result arrival, so neither the ramp-up nor a tail
        of messages whose receive answer was lost, waiting out their visibility, decides it;
        seconds from sending to the first result)."""
        ids = [f"{name}-{i}" for i in range(n)]
        all_ids.extend(ids)
        start = time.monotonic()
        send_bodies(endpoint, queues.request_url,
                    [(rid, embed_request(rid, sentence(i))) for i, rid in enumerate(ids)])
        try:
            collector.wait_for_ids(set(ids), timeout, alive)
        except TimeoutError:
            timed_out.append(name)
        times = sorted(rs[0].received_at for i in ids if (rs := collector.by_request.get(i)))
        if len(times) < 4:
            return 0.0, float("inf")
        lo, hi = len(times) // 10, (len(times) * 8) // 10
        return (hi - lo) / max(1e-3, times[hi] - times[lo]), times[0] - start

    outage_call_rate = float("inf")
    outage_calls_by_op: dict[str, int] = {}
    recovered_rate = faulted_rate = clean_rate = 0.0
    first_result_after_outage_s = recovery_s = float("inf")
    fault_calls = delayed = 0
    healthy_after_outage = False
    try:
        worker.wait_ready()
        clean_rate, _ = phase("clean", n_clean, 120)

        proxy.plan = FAULTS
        calls_before = proxy.stats.total_calls()
        faults_before = dict(proxy.stats.faults)
        faulted_rate, _ = phase("faults", n_faults, pick(120, 300, 600))
        fault_calls = proxy.stats.total_calls() - calls_before
        delayed = proxy.stats.faults["delay"] - faults_before.get("delay", 0)

        outage_start = time.monotonic()
        proxy.begin_outage()
        time.sleep(outage_s)  # the outage lasts this long; we count the calls made meanwhile
        # Steady state: the second half of the outage (the first holds the quick first retries).
        window = (outage_start + outage_s / 2, time.monotonic())
        outage_call_rate = proxy.stats.calls_between(*window) / (outage_s / 2)
        outage_calls_by_op = proxy.stats.calls_by_operation_between(*window)
        proxy.plan = FaultPlan(enabled=False)
        healthy_after_outage = worker.alive and worker.healthy()

        # A probe first: its last result marks the end of the receivers' backoff (botocore
        # waits up to ~16 s between its attempts); then throughput is measured again.
        probe_start = time.monotonic()
        _, first_result_after_outage_s = phase("probe", 50, 120)
        recovery_s = time.monotonic() - probe_start
        recovered_rate, _ = phase("recovered", n_clean, 120)
        # the last deletes (and re-deliveries' results) flush before the worker is stopped
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: queues.counts(queues.request_url) == (0, 0), 60, 0.2, "empty queue")
    finally:
        lost, duplicates = collector.accounting(all_ids)
        crashes = 0 if worker.alive else 1
        worker.kill()
        collector.stop()
        proxy.stop()
    left = queues.counts(queues.request_url)
    dlq = drain_queue(endpoint, queues.dlq_url)

    chaos_report.load = (
        f"{n_clean}+{n_faults}+50+{n_clean} requests (clean, faults, probe, recovered)"
    )
    chaos_report.faults = {
        **proxy.stats.fault_summary(),
        "outage_s": outage_s,
        "delayed_share": round(delayed / max(1, fault_calls), 3),
        **({"broken_build": list(env_breaks())} if env_breaks() else {}),
    }
    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = lost, duplicates, crashes
    chaos_report.figures = {
        "msgs_per_s": {"clean": round(clean_rate, 1), "faults": round(faulted_rate, 1),
                       "recovered": round(recovered_rate, 1)},
        "recovered_vs_clean": round(recovered_rate / max(clean_rate, 1e-9), 2),
        "first_result_after_outage_s": round(first_result_after_outage_s, 1),
        "all_probe_results_after_outage_s": round(recovery_s, 1),
        "left_on_queue": list(left),
        "calls_during_faults": fault_calls,
        "outage_calls_per_s": round(outage_call_rate, 1),
        "outage_calls_by_operation": outage_calls_by_op,
        "duplicates_by_phase": {
            phase_name: collector.accounting([i for i in all_ids if i.startswith(phase_name)])[1]
            for phase_name in ("clean", "faults", "probe", "recovered")
        },
        "dlq": len(dlq),
    }

    assert crashes == 0 and healthy_after_outage
    assert lost == 0, f"{lost} lost; phases that timed out: {timed_out}"
    assert left == (0, 0)
    assert not dlq
    assert collector.keyed()
    assert delayed / fault_calls >= 0.10, "fewer than 10 % of calls delayed"
    assert proxy.stats.faults["partial"] > 0 and proxy.stats.faults["throttle"] > 0
    # Backoff: a hot retry loop makes hundreds of calls a second per thread against a dead
    # endpoint (a local 503 takes ~2 ms); backed-off retries from the receivers, the writer and
    # the heartbeat stay in the tens.
    assert outage_call_rate <= 50, f"{outage_call_rate:.0f} calls/s during the outage"
    # After an outage botocore's backoff (up to ~20 s) and the receivers' pause delay the first
    # receive; once flowing, throughput must be back near the clean figure.
    assert recovery_s <= 30, f"the 50-request probe took {recovery_s:.0f}s after the outage"
    # (smoke scale measures sub-second windows on a shared 2-core machine: a looser bound)
    assert recovered_rate >= pick(0.33, 0.5, 0.5) * clean_rate, (
        f"throughput did not recover: {recovered_rate:.0f} vs {clean_rate:.0f} msgs/s"
    )
