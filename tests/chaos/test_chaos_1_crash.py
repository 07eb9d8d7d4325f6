"""Chaos 1 — crash: workers SIGKILLed at random moments under load, restarted, two at once part of
the time. Afterwards every request id has a result (zero lost), duplicates are counted (each a
re-delivery of the same SQS message after a kill, carrying its request id as the dedup key), the
input queue is empty and the DLQ holds nothing.

Broken build that fails it: CHAOS_BREAK=delete_before_write (README, chaos section).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.conftest import SCALE, ChaosEntry, pick
from chaos.support.harness import (
    Queues,
    ResultCollector,
    WorkerProcess,
    WorkerSpec,
    drain_queue,
    embed_request,
    env_breaks,
    metric_value,
    send_bodies,
    sentence,
    wait_for,
)


@pytest.mark.chaos_smoke
def test_crash_sigkill(
    chaos_report: ChaosEntry,
    chaos_queues: Callable[..., Queues],
    worker_factory: Callable[..., WorkerProcess],
    tiny_model_dir: Path,
    fauxqs_server: Any,
    log_dir: Path,
) -> None:
    requests = pick(300, 1000, 5000)
    kills_wanted = pick(2, 6, 20)
    gap_s = pick((0.3, 1.5), (1.0, 6.0), (1.0, 7.0))
    visibility_s = pick(4, 6, 8)
    seed = int(os.environ.get("CHAOS_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    breaks = env_breaks()

    queues = chaos_queues("crash", visibility_s=visibility_s, max_receive=10)
    endpoint = fauxqs_server.endpoint_url
    # Simulated accelerator time per batch makes the backlog last the kill schedule, so kills
    # land while requests are buffered, on the model and being written. It is a floor no machine
    # can beat: in smoke scale three workers take 8 rows per 0.2 s each, 120 msgs/s, so the 300
    # requests last at least 2.5 s, past the first kill (within 1.5 s). At 0.1 s they lasted
    # 1.25 s, and a run whose kills both came late had no kill hit a worker holding messages.
    spec = WorkerSpec(
        queues, tiny_model_dir, endpoint, log_dir, visibility_s=visibility_s,
        forward_delay_s=pick(0.2, 0.15, 0.15),
        extra={"WORKER_MAX_BATCH_SIZE": pick("8", "16", "16"), "WORKER_SHUTDOWN_TIMEOUT_S": "5"},
    )
    ids = [f"crash-{i}" for i in range(requests)]
    chaos_report.load = f"{requests} requests, tiny BERT + {spec.forward_delay_s} s/forward"
    collector = ResultCollector(endpoint, queues.result_url).start()
    # Two start together: one is killed while the other works; afterwards 1 or 2 run at random.
    # Smoke scale (inside `make test`) saves the serial restarts: three start together, two are
    # killed at random moments while all three work, the third finishes.
    restart = SCALE != "smoke"
    workers: list[WorkerProcess] = [worker_factory(spec) for _ in range(pick(3, 2, 2))]
    for w in workers:
        w.wait_ready()
    send_bodies(endpoint, queues.request_url,
                [(rid, embed_request(rid, sentence(i))) for i, rid in enumerate(ids)])

    kills = 0
    kills_while_two = 0
    kills_before_ready = 0
    kills_in_flight = 0
    crashes = 0
    two_at_once_s = 0.0
    last = time.monotonic()

    def kill(victim: WorkerProcess) -> None:
        nonlocal kills, kills_before_ready, kills_in_flight, kills_while_two
        kills_before_ready += not victim.ready()
        kills_while_two += sum(w.alive for w in workers) >= 2
        # what the victim holds right now (its own gauge: received, not yet deleted)
        kills_in_flight += metric_value(victim.metrics(), "gpuqueue_in_flight_messages") > 0
        victim.kill()
        kills += 1
        workers.remove(victim)

    while kills < kills_wanted:
        # The first kill comes within 1.5 s, while the backlog surely lasts, and hits a worker
        # holding messages: with a random first moment a fast machine could answer everything
        # first, and then no kill tested anything. The rest come at random moments.
        first = kills == 0
        time.sleep(rng.uniform(*((0.3, 1.5) if first else gap_s)))  # the chaos schedule itself
        now = time.monotonic()
        crashes += sum(1 for w in workers if w.crashed())
        workers[:] = [w for w in workers if w.alive]
        if len(workers) >= 2:
            two_at_once_s += now - last
        last = now
        # In smoke scale only ready workers holding messages are killed (two kills must hit real
        # work: with three workers the backlog can be gone within a second); otherwise any
        # moment counts after the first kill, start-up and warm-up included.
        candidates = workers
        if SCALE == "smoke" or first:
            ready = [w for w in workers if w.ready()]
            holding = [
                w for w in ready if metric_value(w.metrics(), "gpuqueue_in_flight_messages") > 0
            ]
            candidates = holding or ready or workers
        kill(rng.choice(candidates))
        if not restart:
            continue
        workers.append(worker_factory(spec))
        # Part of the time a second worker runs beside the first (and is killed too).
        if len(workers) < 2 and rng.random() < 0.5:
            workers.append(worker_factory(spec))
        elif len(workers) >= 2 and rng.random() < 0.25 and kills < kills_wanted:
            kill(workers[0])

    if not any(w.alive for w in workers):
        workers.append(worker_factory(spec))

    def no_crash() -> None:
        for w in workers:
            if w.crashed():
                raise AssertionError(f"{w.name} crashed (exit {w.process.returncode}):\n{w.tail()}")

    wait_s = pick(90, 240, 600)
    try:
        collector.wait_for_ids(set(ids), timeout=wait_s, alive=no_crash)
        wait_for(lambda: queues.counts(queues.request_url) == (0, 0), 30, 0.2,
                 "the request queue to be empty")
    except TimeoutError:
        pass  # reported below as lost / left on the queue
    crashes += sum(1 for w in workers if w.crashed())
    for w in workers:
        w.kill()  # everything is answered: no drain needed (the drain test covers SIGTERM)
    collector.stop()
    lost, duplicates = collector.accounting(ids)
    dlq = drain_queue(endpoint, queues.dlq_url)
    left = queues.counts(queues.request_url)
    # Each duplicate is a re-delivery of the same SQS message (not a second copy sent by us).
    redelivered_same_message = all(
        len({r.message_id for r in collector.by_request[i]}) == 1
        for i in ids if len(collector.by_request.get(i, [])) > 1
    )

    chaos_report.faults = {
        "sigkill": kills, "kills_with_two_workers": kills_while_two,
        "kills_before_ready": kills_before_ready, "kills_with_messages_in_flight": kills_in_flight,
        "seed": seed,
        **({"broken_build": list(breaks)} if breaks else {}),
    }
    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = lost, duplicates, crashes
    chaos_report.figures = {
        "dlq": len(dlq), "left_on_queue": list(left), "two_workers_s": round(two_at_once_s, 1),
        "results": collector.total,
    }

    assert kills >= kills_wanted
    assert crashes == 0
    assert lost == 0, f"{lost} of {requests} requests lost (seed {seed})"
    assert kills_in_flight >= 1, "no kill hit a worker holding messages: the test proved nothing"
    assert not dlq, f"{len(dlq)} valid request(s) in the DLQ"
    assert left == (0, 0), f"requests left on the input queue (visible, in flight): {left}"
    assert collector.keyed(), "a result lacks the gpuqueue-request-id attribute (its dedup key)"
    assert redelivered_same_message
    assert all(r.status == "ok" for rs in collector.by_request.values() for r in rs)
