"""Why worker/model.py sets OMP_WAIT_POLICY=PASSIVE: a batched MiniLM forward under each policy.

    .venv/bin/python bench/omp_wait_policy.py [--rounds 3] [--sentences 640]

libgomp reads the policy once, when torch loads, so each measurement runs in a fresh
subprocess; the policies alternate, and the last line is one JSON object with the rates and
their ratios (best, median, worst). The difference shows when the cores are shared (other threads
of the worker, the SQS server, neighbours); on idle dedicated cores the two are close.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from bench.sentences import load_sentences
from worker.config import bundled_model_dir
from worker.model import ModelRunner
runner = ModelRunner.load(bundled_model_dir(), "embed", device="cpu")
runner.warm_up()
sentences, _ = load_sentences({n})
encoded = [runner.encode([s], {{}}) for s in sentences]
order = sorted(range(len(sentences)), key=lambda i: encoded[i].length)
started = time.perf_counter()
for k in range(0, len(order), 32):
    runner.run(runner.prepare([(encoded[i], {{}}) for i in order[k:k + 32]]))
print(len(sentences) / (time.perf_counter() - started))
"""


def measure(policy: str, n: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), n=n)],
        env=env, capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=640)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"ACTIVE": [], "PASSIVE": []}
    for _ in range(args.rounds):
        for policy in rates:
            rates[policy].append(measure(policy, args.sentences))
            print(f"{policy:8} {rates[policy][-1]:7.1f} sentences/s", file=sys.stderr)
    # best-of shows the idle-machine case; median and worst show what contention does
    summary = {}
    for name, pick in (("best", max), ("median", statistics.median), ("worst", min)):
        summary[f"passive_vs_active_{name}"] = round(
            pick(rates["PASSIVE"]) / pick(rates["ACTIVE"]), 3
        )
    print(json.dumps({
        **summary,
        "rounds": {k: [round(v, 1) for v in values] for k, values in rates.items()},
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
