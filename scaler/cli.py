"""`python -m scaler once|simulate|compare`: the Lambda's path, the simulator, the README table.

    python -m scaler once [--dry-run] [--json]
    python -m scaler simulate --trace FILE --policy {default,keda,step,sagemaker}
        [--service-rate R] [--startup-delay S] [--tick S] [--json] [--plot out.png]
    python -m scaler compare [--markdown] [--plot docs/sim-bursty.png --plot-trace bursty]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    from scaler.baselines import POLICY_NAMES
    from scaler.policy import PolicyConfig

    parser = argparse.ArgumentParser(prog="python -m scaler", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    once = sub.add_parser("once", help="one decision per target, then patch (or not: --dry-run)")
    once.add_argument("--dry-run", action="store_true", help="decide and print, patch nothing")
    once.add_argument("--json", action="store_true", help="one JSON document instead of lines")

    def sim_knobs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--service-rate", type=float, default=2.0, help="msgs/s per ready replica")
        p.add_argument("--startup-delay", type=float, default=150.0, help="s to serve")
        p.add_argument("--tick", type=float, default=20.0, help="default policy's period (s)")
        p.add_argument("--count-lag", type=float, default=15.0, help="SQS count staleness (s)")
        p.add_argument("--min-replicas", type=int, default=0)
        p.add_argument("--max-replicas", type=int, default=20)
        # the default policy's burst knobs (PolicyConfig's defaults), to see the trade-off
        p.add_argument("--keep-warm-fraction", type=float, default=PolicyConfig.keep_warm_fraction)
        p.add_argument("--keep-warm-s", type=float, default=PolicyConfig.keep_warm_s)
        p.add_argument(
            "--stabilization", type=float, default=PolicyConfig.scale_down_stabilization_s,
            help="default policy's scale-down stabilization (s)",
        )

    sim = sub.add_parser("simulate", help="replay a trace through one policy")
    sim.add_argument("--trace", required=True, help="CSV t,arrivals (or a shipped trace name)")
    sim.add_argument("--policy", choices=POLICY_NAMES, default="default")
    sim_knobs(sim)
    sim.add_argument("--json", action="store_true")
    sim.add_argument("--plot", help="write arrivals/backlog/replicas to this PNG")

    cmp_ = sub.add_parser("compare", help="all policies x all shipped traces (the README table)")
    sim_knobs(cmp_)
    cmp_.add_argument("--traces", nargs="*", help="trace files (default: the shipped ones)")
    cmp_.add_argument("--json", action="store_true")
    cmp_.add_argument("--plot", help="PNG of default vs keda on --plot-trace")
    cmp_.add_argument("--plot-trace", default="bursty")
    return parser


def _trace_path(value: str) -> Path:
    from scaler.simulator import TRACES_DIR

    path = Path(value)
    if not path.exists() and (TRACES_DIR / f"{value}.csv").exists():
        return TRACES_DIR / f"{value}.csv"
    return path


def _sim_setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from scaler.policy import PolicyConfig
    from scaler.simulator import SimConfig

    sim = SimConfig(
        service_rate=args.service_rate, startup_delay=args.startup_delay, count_lag=args.count_lag
    )
    # the modelled drain metric reaches back its publication lag plus its window
    cfg = PolicyConfig(
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        drain_reach_s=sim.drain_lag + sim.drain_window,
        keep_warm_fraction=args.keep_warm_fraction,
        keep_warm_s=args.keep_warm_s,
        scale_down_stabilization_s=args.stabilization,
    )
    return cfg, sim


def cmd_simulate(args: argparse.Namespace) -> int:
    from scaler.baselines import make_policy
    from scaler.simulator import load_trace, plot, simulate

    cfg, sim = _sim_setup(args)
    path = _trace_path(args.trace)
    result = simulate(load_trace(path), make_policy(args.policy, cfg, args.tick), sim, path.stem)
    if args.plot:
        plot([result], args.plot)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{result.policy} on {result.trace}: p50 {result.p50_wait_s:.0f}s, "
            f"p95 {result.p95_wait_s:.0f}s, max {result.max_wait_s:.0f}s wait; "
            f"{result.gpu_hours:.2f} GPU-h; max backlog {result.max_backlog}; "
            f"{result.scale_events} scale events"
        )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from scaler.baselines import POLICY_NAMES, make_policy
    from scaler.simulator import TRACES_DIR, load_trace, plot, simulate

    cfg, sim = _sim_setup(args)
    paths = [_trace_path(t) for t in args.traces] if args.traces else None
    if paths is None:
        order = ["diurnal", "bursty", "idle-with-spikes", "ramp"]
        paths = [TRACES_DIR / f"{n}.csv" for n in order if (TRACES_DIR / f"{n}.csv").exists()]
    rows = []
    for path in paths:
        arrivals = load_trace(path)
        results = {
            name: simulate(arrivals, make_policy(name, cfg, args.tick), sim, path.stem)
            for name in POLICY_NAMES
        }
        for res in results.values():
            rows.append(res.summary())
        if args.plot and path.stem == args.plot_trace:
            plot(
                [results["default"], results["keda"]],
                args.plot,
                title=f"{path.stem}: default vs keda (service {sim.service_rate}/s/replica, "
                f"start-up {sim.startup_delay:.0f}s)",
            )
    if args.json:
        print(json.dumps(rows))
        return 0
    print("| trace | policy | p50 wait s | p95 wait s | max wait s | GPU-hours | scale events |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['trace']} | {r['policy']} | {r['p50_wait_s']:.0f} | {r['p95_wait_s']:.0f} | "
            f"{r['max_wait_s']:.0f} | {r['gpu_hours']:.2f} | {r['scale_events']} |"
        )
    print()
    print("| trace | default p95 / keda p95 | default GPU-h / keda GPU-h |")
    print("|---|---:|---:|")
    by = {(r["trace"], r["policy"]): r for r in rows}
    for path in paths:
        d, k = by[(path.stem, "default")], by[(path.stem, "keda")]
        p95 = d["p95_wait_s"] / k["p95_wait_s"] if k["p95_wait_s"] else float("nan")
        print(f"| {path.stem} | {p95:.2f} | {d['gpu_hours'] / k['gpu_hours']:.2f} |")
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from scaler.config import ConfigError, load_settings
    from scaler.runner import build_deps, run_once

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    # the lines go to stdout; keep the logger from printing them twice
    logging.getLogger("scaler").setLevel(logging.WARNING)
    outcomes = run_once(settings, build_deps(settings), True if args.dry_run else None)
    if args.json:
        print(json.dumps({"targets": [o.as_dict() for o in outcomes]}))
    else:
        for outcome in outcomes:
            print(outcome.line())
    return EXIT_FAILED if any(o.error for o in outcomes) else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "once":
        return cmd_once(args)
    try:
        if args.command == "simulate":
            return cmd_simulate(args)
        return cmd_compare(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
