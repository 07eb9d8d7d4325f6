"""`make sim-report`: every figure docs/scaler.md shows, regenerated into one JSON file.

    python -m scaler.report [--out docs/results/sim-report.json] [--img docs/img] [--jobs 2]
    python -m scaler.report --markdown docs/scaler.md     # rewrite the tables from the JSON

For every trace family, seed and setting (service rate × node start-up) it runs
`scaler.frontier.compare` (KEDA's 33-config sweep, the default, the oracle, reactive-ideal) plus
the SageMaker baseline, on the tuning seeds (0–4, where the default's knobs were chosen) and on
the report seeds (100–119, never used to choose anything). The JSON records when, from which
commit and on what machine it was made, the default's knobs, the definitions, every run and the
per-family summaries (mean and range). The markdown tables are generated from it (scaler.reportmd).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from scaler.frontier import (
    GPU_GOAL,
    MIN_REPLICAS,
    P95_GOAL,
    QUEUE_LENGTHS,
    Point,
    compare,
    goal,
    point,
)
from scaler.lineup import make_policy
from scaler.policy import PolicyConfig
from scaler.simulator import SimConfig, simulate
from scaler.tracegen import FAMILIES, REPORT_SEEDS, TUNING_SEEDS, generate

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ((2.0, 150.0), (2.0, 180.0), (20.0, 150.0), (20.0, 180.0))
MAX_REPLICAS = 20

DEFINITIONS = {
    "p95_vs_frontier": "default's p95 / KEDA frontier's p95 at default's GPU-hours",
    "gpu_hours_vs_frontier": "default's GPU-hours / KEDA frontier's GPU-hours at default's p95",
    "frontier": f"Pareto points of KEDA queueLength {list(QUEUE_LENGTHS)} x minReplicaCount "
    f"{list(MIN_REPLICAS)} (other knobs KEDA's defaults) plus keda-shipped",
    "out_of_range": "linear between frontier points, flat beyond its ends (both favour KEDA); "
    "p95s below 1 s count as 1 s in the ratio",
    "goal": f"p95_vs_frontier <= {P95_GOAL} (counted only when the default uses no more "
    f"GPU-hours than the dearest frontier point) or gpu_hours_vs_frontier <= {GPU_GOAL} (counted "
    "only when its p95 is no worse than the cheapest frontier point's)",
    "oracle_meets": "the same goal test applied to the oracle instead of the default: where the "
    "clairvoyant bound misses it too, no policy can be expected to meet it",
    "gpu_hours": "node-hours: booting, serving and lingering GPU nodes",
}


def sim_for(rate: float, delay: float, seed: int) -> SimConfig:
    return SimConfig(service_rate=rate, startup_delay=delay, seed=seed)


def policy_for(sim: SimConfig) -> PolicyConfig:
    """The default as a user configures it: the GPU's measured rate, its node start-up."""
    return PolicyConfig(
        max_replicas=MAX_REPLICAS, drain_rate_prior=sim.service_rate,
        startup_delay_s=sim.startup_delay, drain_reach_s=sim.drain_reach_s,
    )


def run_one(job: tuple[str, int, float, float, float | None]) -> dict[str, Any]:
    family, seed, rate, delay, hours = job
    arrivals = generate(family, seed, hours)
    sim = sim_for(rate, delay, seed)
    cfg = policy_for(sim)
    result = compare(arrivals, sim, cfg, f"{family}-{seed}")
    sm = point(simulate(arrivals, make_policy("sagemaker", cfg, sim, arrivals), sim))
    result["sagemaker"] = {"p95_wait_s": sm.p95_wait_s, "gpu_hours": sm.gpu_hours}
    oracle = Point("oracle", result["oracle"]["p95_wait_s"], result["oracle"]["gpu_hours"])
    front = [Point(p["label"], p["p95_wait_s"], p["gpu_hours"]) for p in result["frontier"]]
    result["oracle_meets"] = goal(oracle, front)[2]
    result.update(family=family, seed=seed, messages=sum(arrivals), hours=len(arrivals) / 3600)
    return result


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(sum(values) / len(values), 4), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per family × setting: mean and range of both ratios, how many runs met the goal."""
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["family"], r["service_rate"], r["startup_delay"]), []).append(r)
    out = []
    for (family, rate, delay), rs in groups.items():
        out.append({
            "family": family, "service_rate": rate, "startup_delay": delay, "runs": len(rs),
            "p95_vs_frontier": _stats([r["p95_vs_frontier"] for r in rs]),
            "gpu_hours_vs_frontier": _stats([r["gpu_hours_vs_frontier"] for r in rs]),
            "met": sum(r["goal_met"] for r in rs),
            "oracle_meets": sum(r["oracle_meets"] for r in rs),
            **{f"{k}_p95_wait_s": _stats([r[k]["p95_wait_s"] for r in rs])
               for k in ("default", "oracle", "reactive_ideal", "keda_shipped", "sagemaker")},
            **{f"{k}_gpu_hours": _stats([r[k]["gpu_hours"] for r in rs])
               for k in ("default", "oracle", "reactive_ideal", "keda_shipped", "sagemaker")},
        })
    return out


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(started: float) -> dict[str, Any]:
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": _git_commit(),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "command": "make sim-report",
        "elapsed_s": round(time.time() - started, 1),
    }


def build(families: list[str], settings: tuple[tuple[float, float], ...], tuning: list[int],
          report: list[int], jobs: int, hours: float | None = None) -> dict[str, Any]:
    started = time.time()
    plan = {"tuning": tuning, "report": report}
    results: dict[str, list[dict[str, Any]]] = {}
    with Pool(jobs) as pool:
        for part, seeds in plan.items():
            work = [(f, s, r, d, hours) for f in families for s in seeds for r, d in settings]
            results[part] = pool.map(run_one, work, chunksize=1)
    for part, runs in results.items():
        for r in runs:  # all 33 KEDA points only where a plot shows them
            if part != "report" or r["seed"] != report[0]:
                r.pop("keda")
    default = asdict(PolicyConfig())
    return {
        "about": "scaler simulator report: KEDA's frontier vs the default policy (docs/scaler.md)",
        "generated": provenance(started),
        "definitions": DEFINITIONS,
        "default_policy": {"knobs": default, "tuned_on_seeds": list(TUNING_SEEDS),
                           "per_run": "drain_rate_prior = service rate, startup_delay_s = the "
                           "node start-up, drain_reach_s = the metric's reach, max_replicas 20"},
        "seeds": plan,
        "settings": [{"service_rate": r, "startup_delay": d} for r, d in settings],
        "families": families,
        "summary": {"report": summarise(results["report"]), "tuning": summarise(results["tuning"])},
        "runs": results,
    }


def plots(report: dict[str, Any], img: Path) -> list[str]:
    """One frontier plot per family at each service rate (the first report seed, 150/180 s)."""
    from scaler.frontier import plot

    img.mkdir(parents=True, exist_ok=True)
    written = []
    seed = report["seeds"]["report"][0]
    for r in report["runs"]["report"]:
        key = (r["service_rate"], r["startup_delay"])
        if r["seed"] != seed or key not in ((2.0, 150.0), (20.0, 180.0)):
            continue
        path = img / f"frontier-{r['family']}-{r['service_rate']:g}.png"
        plot(r, str(path))
        written.append(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scaler.report", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/sim-report.json")
    parser.add_argument("--img", type=Path, default=ROOT / "docs/img")
    parser.add_argument("--jobs", type=int, default=2, help="processes (the machine has 2 cores)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--report-seeds", type=int, nargs="*", default=list(REPORT_SEEDS))
    parser.add_argument("--tuning-seeds", type=int, nargs="*", default=list(TUNING_SEEDS))
    parser.add_argument("--hours", type=float, default=None, help="shorter traces (smoke runs)")
    parser.add_argument("--markdown", type=Path, nargs="*",
                        help="only rewrite these files' tables from --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from scaler.reportmd import rewrite

    if args.markdown is None:
        report = build(args.families, SETTINGS, args.tuning_seeds, args.report_seeds, args.jobs,
                       args.hours)
        report["figures"] = plots(report, args.img)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"{args.out}: {sum(len(v) for v in report['runs'].values())} runs in "
              f"{report['generated']['elapsed_s']:.0f}s", file=sys.stderr)
        return 0
    report = json.loads(args.out.read_text())
    for path in args.markdown:
        rewrite(path, report)
        print(f"{path}: tables rewritten from {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
