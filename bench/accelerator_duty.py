"""How busy the pipeline keeps an accelerator: duty = device-busy time / wall time.

    .venv/bin/python bench/accelerator_duty.py [--batch-ms 25] [--sweep 25,20,16,12,10,8]

A stand-in accelerator: the real runner's encode and prepare (MiniLM's tokenizer, padding), and a
forward that waits T x rows/32 ms with the GIL released (time.sleep, as a CUDA stream
synchronisation waits), then returns a fixed vector. At T = 25 ms per batch of 32 the device
could serve 1,280 msgs/s; duty says what share of that the pipeline delivers (with the wait
proportional to the rows, duty is also the throughput delivered / the device's capacity, so a
pipeline that starved the device into small batches cannot look busy). The real pipeline runs
end to end through fauxqs, from a pre-filled queue; duty is measured over the steady state
(from the 10th to the 90th percentile forward). The sweep finds the highest demand at which
duty stays >= 0.9. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from bench.sentences import load_sentences
from worker.config import bundled_model_dir
from worker.model import ModelRunner, Prepared
from worker.seams import Encoded

if TYPE_CHECKING:  # the fauxqs runs only: duty_in_memory must import without boto3 (GPU host)
    from worker import devsqs

FULL_BATCH = 32
DUTY_GOAL = 0.9


class StandInAccelerator:
    """The real runner's CPU side; a forward that only waits, GIL released."""

    def __init__(self, runner: ModelRunner, batch_ms: float) -> None:
        self.runner = runner
        self.name = runner.name
        self.device, self.dtype, self.torch_dtype = runner.device, runner.dtype, runner.torch_dtype
        self.batch_s = batch_ms / 1000.0
        params: dict[str, Any] = {}
        self.vector = runner.run(runner.prepare([(runner.encode(["hello"], params), params)]))[0]
        self.busy: list[tuple[float, float, int]] = []  # (start, end, rows)
        self._lock = threading.Lock()

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        return self.runner.encode(texts, parameters)

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> Prepared:
        return self.runner.prepare(items)

    def run(self, prepared: Prepared) -> list[Any]:
        rows = prepared.size
        started = time.perf_counter()
        time.sleep(self.batch_s * rows / FULL_BATCH)
        ended = time.perf_counter()
        with self._lock:
            self.busy.append((started, ended, rows))
        return [self.vector for _ in prepared.items]


class TimedRunner:
    """A real runner whose forwards are timed (for duty with the real model on a GPU: `run`
    returns host values, so its time includes the device's)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.name = runner.name
        self.busy: list[tuple[float, float, int]] = []

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Any:
        return self.runner.encode(texts, parameters)

    def encode_many(self, requests: Sequence[tuple[list[str], Mapping[str, Any]]]) -> list[Any]:
        return list(self.runner.encode_many(requests))

    def prepare(self, items: Sequence[tuple[Any, Mapping[str, Any]]]) -> Any:
        return self.runner.prepare(items)

    def run(self, prepared: Any) -> list[Any]:
        started = time.perf_counter()
        outputs = self.runner.run(prepared)
        self.busy.append((started, time.perf_counter(), prepared.size))
        return list(outputs)


def duty_in_memory(
    runner: Any, sentences: Sequence[str], timeout_s: float = 120.0
) -> dict[str, Any]:
    """The real Worker over an in-memory queue (bench/memory_queue.py: no SQS server, no boto3)
    with `runner` timed: duty, delivered msgs/s and rows per forward over the steady state."""
    from bench.memory_queue import MemoryQueue
    from worker.config import load_settings
    from worker.pipeline import Worker

    queue = MemoryQueue()
    queue.put([json.dumps({"id": f"r{i}", "inputs": s}) for i, s in enumerate(sentences)])
    timed = TimedRunner(runner)
    settings = load_settings(
        queue_url=queue.url,
        result_queue_url=queue.url.rsplit("/", 1)[0] + "/results",
        model=runner.name if Path(runner.name).exists() else (bundled_model_dir() or runner.name),
        http_port=0,
        log_level="WARNING",
        receive_wait_s=1,
    )
    worker = Worker(settings, timed, queue)
    started = time.perf_counter()
    worker.start()
    try:
        deadline = started + timeout_s
        while queue.deleted < len(sentences) and time.perf_counter() < deadline:
            if worker.crashed is not None:
                raise RuntimeError(f"worker crashed: {worker.crashed!r}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        worker.shutdown(timeout_s=2.0)
    duty, mean_rows = steady_duty(timed.busy)
    return {
        "duty": round(duty, 3),
        "delivered_msgs_s": round(queue.deleted / elapsed, 1),
        "mean_rows_per_forward": round(mean_rows, 1),
        "messages": len(sentences),
        "answered": queue.deleted,
    }


def steady_duty(busy: Sequence[tuple[float, float, int]]) -> tuple[float, float]:
    """(duty, mean rows per forward) between the 10th and the 90th percentile forward."""
    ordered = sorted(busy)
    lo, hi = len(ordered) // 10, max(len(ordered) // 10 + 1, (len(ordered) * 9) // 10)
    window = ordered[lo:hi]
    wall = window[-1][1] - window[0][0]
    spent = sum(end - start for start, end, _ in window)
    return spent / wall if wall > 0 else 0.0, sum(r for *_, r in window) / len(window)


def measure(
    server: devsqs.LocalServer, runner: ModelRunner, batch_ms: float, seconds: float
) -> dict[str, Any]:
    from bench import worker_run as wt

    demand = FULL_BATCH / (batch_ms / 1000.0)
    sentences, _ = load_sentences(int(demand * seconds))
    stand_in = StandInAccelerator(runner, batch_ms)
    run = wt.run_worker(server, stand_in, sentences, delay_s=0.0, reference={})  # type: ignore[arg-type]
    duty, mean_rows = steady_duty(stand_in.busy)
    point = {
        "batch_ms": batch_ms,
        "demand_msgs_s": round(demand, 1),
        "duty": round(duty, 3),
        "delivered_msgs_s": round(run.msgs_s, 1),
        "mean_rows_per_forward": round(mean_rows, 1),
        "messages": len(sentences),
        "worker_cpu_ms_per_msg": round(run.worker_cpu_ms_per_msg, 3),
    }
    print(f"T={batch_ms:5.1f} ms/32: demand {demand:6.0f} msgs/s, duty {duty:.3f}, delivered "
          f"{run.msgs_s:6.0f} msgs/s, {mean_rows:.1f} rows/forward", file=sys.stderr)
    return point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-ms", type=float, default=25.0)
    parser.add_argument("--sweep", default="25,20,16,12,10,8",
                        help="batch times (ms per batch of 32) to find the highest demand at 0.9")
    parser.add_argument("--seconds", type=float, default=6.0, help="work per point, at demand")
    args = parser.parse_args(argv)
    from bench import worker_run  # noqa: F401 - first: it sets the env defaults (OMP, HF)
    from worker import devsqs

    runner = ModelRunner.load(bundled_model_dir() or "", "embed", device="cpu")
    runner.warm_up()
    sweep = sorted({args.batch_ms, *(float(t) for t in args.sweep.split(",") if t)}, reverse=True)
    server = devsqs.start_fauxqs()
    try:
        points = [measure(server, runner, t, args.seconds) for t in sweep]
    finally:
        server.stop()
    at_goal = [p["demand_msgs_s"] for p in points if p["duty"] >= DUTY_GOAL]
    main_point = next(p for p in points if p["batch_ms"] == args.batch_ms)
    figures = {
        f"accelerator_duty_{args.batch_ms:g}ms": main_point["duty"],
        "max_demand_msgs_s_at_duty_0_9": max(at_goal) if at_goal else None,
        "goal_duty": DUTY_GOAL,
        "points": points,
    }
    results.write("accelerator-duty", figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
