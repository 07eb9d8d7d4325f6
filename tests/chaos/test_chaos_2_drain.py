"""Chaos 2 — drain: SIGTERM under load. The worker exits 0 within its grace, the messages it had
not started are visible again within 2 s (released, not left to a 60 s visibility timeout), and no
message it finished is left on the queue to be answered a second time.

Broken builds that fail it: CHAOS_BREAK=no_release (release dropped), CHAOS_BREAK=double_write.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.conftest import ChaosEntry, pick
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

RELEASE_WITHIN_S = 2.0


@pytest.mark.parametrize(
    "scenario",
    [
        # every request already received: the receivers sit in 20 s long polls on an empty
        # queue at SIGTERM (the case where waiting for the polls would hold the rest back)
        pytest.param("all_received", marks=pytest.mark.chaos_smoke),
        # a backlog stays on the queue: the receivers are blocked on the full buffer
        "backlog",
    ],
)
def test_drain_sigterm(
    scenario: str,
    chaos_report: ChaosEntry,
    chaos_queues: Callable[..., Queues],
    worker_factory: Callable[..., WorkerProcess],
    tiny_model_dir: Path,
    fauxqs_server: Any,
    log_dir: Path,
) -> None:
    requests = 200 if scenario == "all_received" else pick(300, 1000, 3000)
    answered_before_term = 20 if scenario == "all_received" else pick(20, 100, 300)
    shutdown_timeout_s = pick(10, 15, 25)
    # The Kubernetes manifests give terminationGracePeriodSeconds well above the drain timeout;
    # here the worker must be out within the drain timeout plus 5 s of process exit.
    grace_s = shutdown_timeout_s + 5
    batch = 8
    visibility_s = 60  # far longer than the test waits: a message visible again was released

    queues = chaos_queues("drain", visibility_s=visibility_s, max_receive=10)
    endpoint = fauxqs_server.endpoint_url
    spec = WorkerSpec(
        queues, tiny_model_dir, endpoint, log_dir, visibility_s=visibility_s,
        forward_delay_s=0.25,
        extra={
            "WORKER_MAX_BATCH_SIZE": str(batch),
            "WORKER_SHUTDOWN_TIMEOUT_S": str(shutdown_timeout_s),
        },
    )
    ids = [f"drain-{i}" for i in range(requests)]
    chaos_report.load = f"{requests} requests, SIGTERM after {answered_before_term} answered"
    chaos_report.faults = {"sigterm": 1, **({"broken_build": list(env_breaks())}
                                             if env_breaks() else {})}
    send_bodies(endpoint, queues.request_url,
                [(rid, embed_request(rid, sentence(i))) for i, rid in enumerate(ids)])
    collector = ResultCollector(endpoint, queues.result_url).start()
    worker = worker_factory(spec)
    worker.wait_ready()
    wait_for(lambda: collector.total >= answered_before_term, 60, 0.05, "results under load")
    if scenario == "all_received":
        wait_for(lambda: queues.counts(queues.request_url)[0] == 0, 30, 0.05,
                 "every request received")
    held_at_term = queues.counts(queues.request_url)[1]

    t0 = time.monotonic()
    worker.terminate()
    released_s: float | None = None
    settled_s: float | None = None
    timeline: dict[str, int] = {}  # in flight on the queue, sampled at 0.5 s, 1 s, 2 s, 4 s, ...
    marks = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    while worker.alive and time.monotonic() - t0 < grace_s + 10:
        in_flight = queues.counts(queues.request_url)[1]
        elapsed = time.monotonic() - t0
        while marks and elapsed >= marks[0]:
            timeline[f"{marks.pop(0):g}s"] = in_flight
        if released_s is None and in_flight <= batch:  # at most the batch in hand remains
            released_s = elapsed
        if settled_s is None and in_flight == 0:
            settled_s = elapsed
        time.sleep(0.02)  # sampling the queue's counters at 50 Hz
    try:
        remaining_s = grace_s + 10 - (time.monotonic() - t0)
        exit_code: int | None = worker.wait(timeout=max(1.0, remaining_s))
    except subprocess.TimeoutExpired:
        exit_code = None
    exit_s = time.monotonic() - t0
    if released_s is None and queues.counts(queues.request_url)[1] <= batch:
        released_s = exit_s
    if exit_code is None:
        worker.kill()
    # Let the collector take the results the drain flushed, then stop it.
    def results_flushed() -> bool:
        return queues.counts(queues.result_url) == (0, 0)

    wait_for(results_flushed, 10, 0.1, "the result queue to be drained by the collector")
    collector.stop()
    visible, in_flight = queues.counts(queues.request_url)
    remaining = drain_queue(endpoint, queues.request_url)
    remaining_ids = [json.loads(m["Body"])["id"] for m in remaining]
    answered = {i for i in ids if collector.by_request.get(i)}
    answered_again = sorted(set(remaining_ids) & answered)
    lost = len(set(ids) - answered - set(remaining_ids))
    _, duplicates = collector.accounting(ids)
    duplicates += len(answered_again)

    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = lost, duplicates, 0
    chaos_report.figures = {
        "exit_code": exit_code, "exit_s": round(exit_s, 2), "grace_s": grace_s,
        "held_at_sigterm": held_at_term,
        "unstarted_visible_again_s": None if released_s is None else round(released_s, 2),
        "all_settled_s": None if settled_s is None else round(settled_s, 2),
        "answered": len(answered), "released_back": len(remaining),
        "in_flight_after_sigterm": timeline, "in_flight_after_exit": in_flight,
    }

    assert exit_code == 0, f"exit code {exit_code}:\n{worker.tail()}"
    assert exit_s <= grace_s, f"took {exit_s:.1f}s to exit, grace {grace_s}s"
    assert released_s is not None and released_s <= RELEASE_WITHIN_S, (
        f"unstarted messages not visible again within {RELEASE_WITHIN_S}s of SIGTERM "
        f"(took {released_s})"
    )
    assert in_flight == 0, f"{in_flight} message(s) left invisible after exit (not released)"
    assert visible == len(remaining)
    assert not answered_again, f"{len(answered_again)} finished request(s) left on the queue"
    assert duplicates == 0, f"{duplicates} result(s) written twice"
    assert lost == 0
    assert held_at_term > 0, "nothing was held at SIGTERM: the drain test proved nothing"
