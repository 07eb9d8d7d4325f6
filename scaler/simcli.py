"""The simulator's commands: `simulate`, `compare`, `frontier` (see scaler.cli for `once`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scaler.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, Behavior, ScalingRules, parse_policies
from scaler.keda import KedaConfig
from scaler.policy import PolicyConfig
from scaler.simulator import TRACES_DIR, SimConfig

SHIPPED_ORDER = ("diurnal", "bursty", "idle-with-spikes", "ramp", "marketplace", "batch")
#: the default policy's knobs the simulator's commands take as flags
POLICY_FLAGS = (
    ("--keep-warm-fraction", "keep_warm_fraction"),
    ("--keep-warm-s", "keep_warm_s"),
    ("--stabilization", "scale_down_stabilization_s"),
    ("--cooldown-to-zero-s", "cooldown_to_zero_s"),
    ("--release-after-s", "release_after_s"),
    ("--target-wait-s", "target_wait_s"),
    ("--headroom", "headroom"),
)


def add_sim_knobs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("queue and nodes")
    g.add_argument("--service-rate", type=float, default=2.0, help="msgs/s per serving replica")
    g.add_argument("--startup-delay", type=float, default=150.0, help="s from asked to serving "
                   "on a new node")
    g.add_argument("--startup-jitter-s", type=float, default=0.0, help="+U(0, J) s per new node")
    g.add_argument("--pod-start", type=float, default=30.0, help="s to serve on a lingering node")
    g.add_argument("--node-linger-s", type=float, default=600.0, help="an unneeded node lingers "
                   "(billed) this long; 0: off")
    g.add_argument("--hold-s", type=float, default=10.0, help="s of work a replica holds")
    g.add_argument("--count-lag", type=float, default=15.0, help="SQS count staleness (s)")
    g.add_argument("--seed", type=int, default=0, help="jitter, metric lags, HPA phase")
    g.add_argument("--min-replicas", type=int, default=0)
    g.add_argument("--max-replicas", type=int, default=20)
    g.add_argument("--initial-replicas", type=int, default=None,
                   help="replicas running at t = 0, with an empty state (default: the minimum)")
    d = p.add_argument_group("the default policy")
    d.add_argument("--tick", type=float, default=20.0, help="seconds between decisions")
    d.add_argument("--drain-rate-prior", type=float, default=None,
                   help="msgs/s per replica before any is measured (default: --service-rate)")
    for flag, name in POLICY_FLAGS:
        d.add_argument(flag, dest=name, type=float, default=getattr(PolicyConfig, name))
    k = p.add_argument_group("the keda baseline (a ScaledObject and its HPA behavior)")
    k.add_argument("--keda-queue-length", type=float, default=5.0)
    k.add_argument("--keda-activation", type=float, default=0.0)
    k.add_argument("--keda-min-replicas", type=int, default=0)
    k.add_argument("--keda-polling-s", type=float, default=30.0)
    k.add_argument("--keda-cooldown-s", type=float, default=300.0)
    for way in ("up", "down"):
        k.add_argument(f"--hpa-scale-{way}", default=None, metavar="POLICIES",
                       help="e.g. Pods:4:60,Percent:100:15 (any --hpa-* flag sets `behavior`)")
        k.add_argument(f"--hpa-scale-{way}-window", type=float, default=None)
        k.add_argument(f"--hpa-scale-{way}-select", choices=("Max", "Min", "Disabled"),
                       default=None)


def trace_path(value: str) -> Path:
    path = Path(value)
    if not path.exists() and (TRACES_DIR / f"{value}.csv").exists():
        return TRACES_DIR / f"{value}.csv"
    return path


def shipped_traces() -> list[Path]:
    return [TRACES_DIR / f"{n}.csv" for n in SHIPPED_ORDER if (TRACES_DIR / f"{n}.csv").exists()]


def _rules(args: argparse.Namespace, way: str, default: ScalingRules) -> ScalingRules:
    text = getattr(args, f"hpa_scale_{way}")
    window = getattr(args, f"hpa_scale_{way}_window")
    select = getattr(args, f"hpa_scale_{way}_select")
    return ScalingRules(
        window_s=default.window_s if window is None else window,
        policies=parse_policies(text) if text else default.policies,
        select=select or default.select,
    )


def keda_config(args: argparse.Namespace) -> KedaConfig:
    flags = [getattr(args, f"hpa_scale_{w}{s}") for w in ("up", "down")
             for s in ("", "_window", "_select")]
    behavior = None
    if any(f is not None for f in flags):
        behavior = Behavior(_rules(args, "up", DEFAULT_SCALE_UP),
                            _rules(args, "down", DEFAULT_SCALE_DOWN))
    return KedaConfig(
        queue_length=args.keda_queue_length, activation=args.keda_activation,
        min_replicas=args.keda_min_replicas, max_replicas=args.max_replicas,
        polling_s=args.keda_polling_s, cooldown_s=args.keda_cooldown_s, behavior=behavior,
    )


def sim_config(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        service_rate=args.service_rate, startup_delay=args.startup_delay,
        startup_jitter_s=args.startup_jitter_s, pod_start=args.pod_start,
        node_linger_s=args.node_linger_s, hold_s=args.hold_s, count_lag=args.count_lag,
        seed=args.seed,
    )


def policy_config(args: argparse.Namespace, sim: SimConfig) -> PolicyConfig:
    """The default policy as a user would configure it for this GPU: its measured throughput
    as the prior, its node start-up, and the drain metric's reach."""
    return PolicyConfig(
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        startup_delay_s=sim.startup_delay,
        drain_rate_prior=args.drain_rate_prior or sim.service_rate,
        drain_reach_s=sim.drain_reach_s,
        **{name: getattr(args, name) for _, name in POLICY_FLAGS},
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from scaler.lineup import make_policy
    from scaler.simplot import plot_series
    from scaler.simulator import load_trace, simulate

    sim = sim_config(args)
    cfg = policy_config(args, sim)
    path = trace_path(args.trace)
    arrivals = load_trace(path)
    policy = make_policy(args.policy, cfg, sim, arrivals, keda_config(args), args.tick)
    result = simulate(
        arrivals, policy, sim, path.stem, args.initial_replicas, record=bool(args.plot)
    )
    if args.plot:
        plot_series([result], args.plot)
    if args.json:
        print(json.dumps(result.summary()))
    else:
        print(
            f"{result.policy} on {result.trace}: p50 {result.p50_wait_s:.0f}s, "
            f"p95 {result.p95_wait_s:.0f}s, max {result.max_wait_s:.0f}s wait; "
            f"{result.gpu_hours:.2f} GPU-h; max backlog {result.max_backlog}; "
            f"{result.scale_events} scale events"
        )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from scaler.lineup import POLICY_NAMES, make_policy
    from scaler.simplot import plot_series
    from scaler.simulator import load_trace, simulate

    sim = sim_config(args)
    cfg = policy_config(args, sim)
    paths = [trace_path(t) for t in args.traces] if args.traces else shipped_traces()
    rows: list[dict[str, Any]] = []
    for path in paths:
        arrivals = load_trace(path)
        results = {
            name: simulate(arrivals, make_policy(name, cfg, sim, arrivals, keda_config(args),
                                                 args.tick), sim, path.stem,
                           args.initial_replicas, record=path.stem == args.plot_trace)
            for name in POLICY_NAMES
        }
        rows += [res.summary() for res in results.values()]
        if args.plot and path.stem == args.plot_trace:
            plot_series([results["default"], results["keda"]], args.plot,
                        title=f"{path.stem}: default vs keda ({sim.service_rate:g} msg/s/replica, "
                        f"start-up {sim.startup_delay:.0f}s)")
    if args.json:
        print(json.dumps(rows))
        return 0
    print("| trace | policy | p50 wait s | p95 wait s | max wait s | GPU-hours | scale events |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['trace']} | {r['policy']} | {r['p50_wait_s']:.0f} | {r['p95_wait_s']:.0f} | "
              f"{r['max_wait_s']:.0f} | {r['gpu_hours']:.2f} | {r['scale_events']} |")
    return 0


def cmd_frontier(args: argparse.Namespace) -> int:
    from scaler.frontier import compare, plot
    from scaler.simulator import load_trace

    sim = sim_config(args)
    cfg = policy_config(args, sim)
    path = trace_path(args.trace)
    result = compare(load_trace(path), sim, cfg, path.stem)
    if args.plot:
        plot(result, args.plot)
    print(f"{path.stem}: {sim.service_rate:g} msg/s per replica, start-up {sim.startup_delay:.0f}s")
    print("KEDA's frontier (GPU-hours, p95 wait):")
    for p in result["frontier"]:
        print(f"  {p['label']:<20} {p['gpu_hours']:8.2f} GPU-h  p95 {p['p95_wait_s']:6.0f}s")
    for key in ("default", "oracle", "reactive_ideal", "keda_shipped"):
        p = result[key]
        print(f"{key:<22} {p['gpu_hours']:8.2f} GPU-h  p95 {p['p95_wait_s']:6.0f}s")
    verdict = "met" if result["goal_met"] else "missed"
    print(f"p95_vs_frontier {result['p95_vs_frontier']:.2f}, gpu_hours_vs_frontier "
          f"{result['gpu_hours_vs_frontier']:.2f}: goal {verdict}")
    if args.json:
        print(json.dumps(result))
    return 0
