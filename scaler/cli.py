"""`python -m scaler once|simulate|compare|frontier`: the Lambda's path and the simulator.

    python -m scaler once [--dry-run] [--json]
    python -m scaler simulate --trace FILE --policy NAME [--service-rate R] [--startup-delay S]
        [--initial-replicas N] [...knobs, see --help] [--json] [--plot out.png]
    python -m scaler compare [--traces FILE ...] [--json] [--plot out.png --plot-trace NAME]
    python -m scaler frontier --trace FILE [--service-rate R] [--startup-delay S] [--json]
        [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

EXIT_FAILED = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    from scaler.lineup import POLICY_NAMES
    from scaler.simcli import add_sim_knobs

    parser = argparse.ArgumentParser(prog="python -m scaler", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    once = sub.add_parser("once", help="one decision per target, then patch (or not: --dry-run)")
    once.add_argument("--dry-run", action="store_true", help="decide and print, patch nothing")
    once.add_argument("--json", action="store_true", help="one JSON document instead of lines")

    sim = sub.add_parser("simulate", help="replay a trace through one policy")
    sim.add_argument("--trace", required=True, help="CSV t,arrivals (or a shipped trace name)")
    sim.add_argument("--policy", choices=POLICY_NAMES, default="default")
    add_sim_knobs(sim)
    sim.add_argument("--json", action="store_true")
    sim.add_argument("--plot", help="write arrivals/backlog/replicas to this PNG")

    cmp_ = sub.add_parser("compare", help="every policy x the shipped traces")
    add_sim_knobs(cmp_)
    cmp_.add_argument("--traces", nargs="*", help="trace files (default: the shipped ones)")
    cmp_.add_argument("--json", action="store_true")
    cmp_.add_argument("--plot", help="PNG of default vs keda on --plot-trace")
    cmp_.add_argument("--plot-trace", default="bursty")

    front = sub.add_parser("frontier", help="KEDA's Pareto frontier on a trace, and the default")
    front.add_argument("--trace", required=True, help="CSV t,arrivals (or a shipped trace name)")
    add_sim_knobs(front)
    front.add_argument("--json", action="store_true", help="the result as JSON, last line")
    front.add_argument("--plot", help="write the frontier plot to this PNG")
    return parser


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
    # botocore says at INFO where it found credentials, on every run
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        deps = build_deps(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    outcomes = run_once(settings, deps, True if args.dry_run else None)
    if args.json:
        print(json.dumps({"targets": [o.as_dict() for o in outcomes]}))
    else:
        for outcome in outcomes:
            print(outcome.line())
    return EXIT_FAILED if any(o.error for o in outcomes) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "once":
        return cmd_once(args)
    from scaler.simcli import cmd_compare, cmd_frontier, cmd_simulate

    command = {"simulate": cmd_simulate, "compare": cmd_compare, "frontier": cmd_frontier}
    try:
        return command[args.command](args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
