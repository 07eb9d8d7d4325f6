"""Chaos 5 — poison and fuzz: thousands of generated invalid bodies (hypothesis: not JSON, not an
object, wrong types, missing inputs, wrong/unknown task, bad reply_to, too long, huge, 20,000-deep
nesting, unicode edge cases) with a few valid control requests among them. Zero crashes, every
invalid body answered once with an error result, every control answered ok, and the model sees
exactly the control inputs once each: no poison reaches it, nothing is retried on it.

Broken build that fails it: CHAOS_BREAK=retry_poison (error results written but poison left on
the queue to be retried).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from chaos.conftest import ChaosEntry, pick
from chaos.support.fuzz import poison_bodies
from chaos.support.harness import (
    CONTROL_WORD,
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

MAX_INPUT_TOKENS = 64
MAX_BODY_BYTES = 16_384
CONTROL_EVERY = 20


PLACEHOLDER = "RID-PLACEHOLDER"


def generate(n: int) -> list[tuple[str, str | None, str]]:
    """n bodies: every CONTROL_EVERY-th a valid control request, the rest hypothesis poison."""
    poison: list[tuple[str, str | None, str]] = []
    n_poison = n - len(range(0, n, CONTROL_EVERY))

    @seed(int(os.environ.get("CHAOS_SEED", "0")) or 20261124)
    @settings(max_examples=n_poison, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(poison_bodies(PLACEHOLDER, MAX_INPUT_TOKENS, MAX_BODY_BYTES))
    def draw(example: tuple[str, str | None, str]) -> None:
        poison.append(example)

    while len(poison) < n_poison:  # hypothesis may stop early; it then draws more
        draw()
    out: list[tuple[str, str | None, str]] = []
    it = iter(poison)
    for i in range(n):
        rid = f"fuzz-{i}"
        if i % CONTROL_EVERY == 0:
            out.append(("control", rid, embed_request(rid, f"{sentence(i)} {CONTROL_WORD}")))
        else:
            kind, has_id, body = next(it)
            out.append((kind, rid if has_id else None, body.replace(PLACEHOLDER, rid)))
    return out


@pytest.mark.chaos_smoke
def test_poison_fuzz(
    chaos_report: ChaosEntry,
    chaos_queues: Callable[..., Queues],
    worker_factory: Callable[..., WorkerProcess],
    tiny_model_dir: Path,
    fauxqs_server: Any,
    log_dir: Path,
) -> None:
    n = pick(300, 2000, 10_560)  # full: 10,032 invalid bodies beside 528 controls (every 20th)
    t_gen = time.monotonic()
    bodies = generate(n)
    gen_s = time.monotonic() - t_gen
    endpoint = fauxqs_server.endpoint_url
    # maxReceiveCount 2: a poison message that is retried instead of deleted reaches the DLQ.
    queues = chaos_queues("fuzz", visibility_s=5, max_receive=2)
    forward_log = log_dir / "forward.jsonl"
    spec = WorkerSpec(
        queues, tiny_model_dir, endpoint, log_dir, visibility_s=5, forward_log=forward_log,
        extra={"WORKER_MAX_INPUT_TOKENS": str(MAX_INPUT_TOKENS),
               "WORKER_MAX_BODY_BYTES": str(MAX_BODY_BYTES), "WORKER_SHUTDOWN_TIMEOUT_S": "5"},
    )
    collector = ResultCollector(endpoint, queues.result_url).start()
    worker = worker_factory(spec)
    worker.wait_ready()
    ready_at = time.time()
    keyed = [(f"{i}", body) for i, (_, _, body) in enumerate(bodies)]
    by_index = send_bodies(endpoint, queues.request_url, keyed)
    index_of = {mid: int(i) for mid, i in by_index.items()}

    def alive() -> None:
        if not worker.alive:
            raise AssertionError(f"worker exited ({worker.process.returncode}):\n{worker.tail()}")

    try:
        collector.wait_for_messages(set(index_of), timeout=pick(90, 300, 900))
        alive()
        wait_for(lambda: queues.counts(queues.request_url) == (0, 0), 20, 0.2, "empty queue")
    except TimeoutError:
        pass  # reported below
    crashes = 0 if worker.alive and worker.healthy() else 1
    worker.kill()
    collector.stop()

    kinds: Counter[str] = Counter(kind for kind, _, _ in bodies)
    n_control = kinds["control"]
    errors: Counter[str] = Counter()
    wrong_status: list[str] = []
    unanswered = duplicates = 0
    for mid, i in index_of.items():
        kind, rid, _ = bodies[i]
        results = collector.by_message.get(mid, [])
        if not results:
            unanswered += 1
            continue
        duplicates += len(results) - 1
        expected = "ok" if kind == "control" else "error"
        if results[0].status != expected:
            wrong_status.append(f"{kind}: {bodies[i][2][:120]!r} -> {results[0].status}")
        if kind != "control":
            errors[str(results[0].error_type)] += 1
        if rid is not None and results[0].request_id not in (rid, None):
            wrong_status.append(f"{kind}: result id {results[0].request_id!r} for {rid!r}")
    rows, markers = read_forward_log(forward_log, since=ready_at)
    dlq = drain_queue(endpoint, queues.dlq_url)
    left = queues.counts(queues.request_url)

    chaos_report.load = f"{n} bodies ({n - n_control} invalid, {n_control} valid controls)"
    chaos_report.faults = {
        "generated_kinds": dict(sorted(kinds.items())),
        **({"broken_build": list(env_breaks())} if env_breaks() else {}),
    }
    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = (
        unanswered, duplicates, crashes
    )
    chaos_report.figures = {
        "error_types": dict(errors.most_common()),
        "error_results_for_invalid": f"{sum(errors.values())}/{n - n_control}",
        "rows_on_model": rows, "control_rows_on_model": markers[CONTROL_WORD],
        "dlq": len(dlq), "left_on_queue": list(left), "generate_s": round(gen_s, 1),
        "max_body_bytes_sent": max(len(b.encode()) for _, _, b in bodies),
    }
    if dlq or wrong_status:
        print("FUZZ FINDINGS", json.dumps({
            "dlq": [m["Body"][:300] for m in dlq[:5]], "wrong": wrong_status[:10],
        }, ensure_ascii=True))

    assert crashes == 0
    assert unanswered == 0, f"{unanswered} bodies without a result"
    assert not wrong_status, f"{len(wrong_status)} wrong results, e.g. {wrong_status[:5]}"
    assert duplicates == 0, f"{duplicates} bodies answered more than once (retried)"
    assert rows == n_control and markers[CONTROL_WORD] == n_control, (
        f"the model ran {rows} rows for {n_control} valid inputs: poison reached it or was retried"
    )
    assert not dlq, f"{len(dlq)} messages in the DLQ: poison was retried instead of answered"
    assert left == (0, 0)
