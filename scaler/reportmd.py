"""docs/scaler.md's tables, written from docs/results/sim-report.json. Pure but `rewrite`.

A table lives between `<!-- sim-report:NAME -->` and `<!-- /sim-report:NAME -->`; everything
between the two markers is replaced, everything else in the file is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _rng(stats: dict[str, float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(stats['mean'])} ({fmt.format(stats['min'])}–{fmt.format(stats['max'])})"


def goal_table(rows: list[dict[str, Any]]) -> str:
    head = ("| family | msg/s per replica | start-up s | p95 vs frontier, mean (range) | "
            "GPU-h vs frontier, mean (range) | goal met | oracle meets |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        verdict = "**all**" if r["met"] == r["runs"] else f"{r['met']}/{r['runs']}"
        lines.append(
            f"| {r['family']} | {r['service_rate']:g} | {r['startup_delay']:.0f} | "
            f"{_rng(r['p95_vs_frontier'])} | {_rng(r['gpu_hours_vs_frontier'])} | {verdict} | "
            f"{r['oracle_meets']}/{r['runs']} |"
        )
    return head + "\n".join(lines)


def figures_table(rows: list[dict[str, Any]]) -> str:
    who = ("default", "oracle", "reactive_ideal", "keda_shipped", "sagemaker")
    head = ("| family | msg/s | start-up s | " + " | ".join(w.replace("_", "-") for w in who)
            + " |\n|---|---:|---:|" + "---:|" * len(who) + "\n")
    lines = []
    for r in rows:
        cells = [f"{r[f'{w}_p95_wait_s']['mean']:.0f} s / {r[f'{w}_gpu_hours']['mean']:.1f} h"
                 for w in who]
        lines.append(f"| {r['family']} | {r['service_rate']:g} | {r['startup_delay']:.0f} | "
                     + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def short_table(rows: list[dict[str, Any]]) -> str:
    """Family × setting: runs meeting the goal (and how many the oracle meets)."""
    settings = sorted({(r["service_rate"], r["startup_delay"]) for r in rows})
    head = ("| family | " + " | ".join(f"{rate:g} msg/s, {delay:.0f} s" for rate, delay in settings)
            + " |\n|---|" + "---:|" * len(settings) + "\n")
    by = {(r["family"], r["service_rate"], r["startup_delay"]): r for r in rows}
    lines = []
    for family in dict.fromkeys(r["family"] for r in rows):
        cells = []
        for rate, delay in settings:
            r = by[(family, rate, delay)]
            cells.append(f"{r['met']}/{r['runs']} (oracle {r['oracle_meets']})")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def provenance(report: dict[str, Any]) -> str:
    g = report["generated"]
    m = g["machine"]
    return (f"Generated {g['date_utc']} from commit `{g['git_commit'][:12]}` on {m['cores']} "
            f"cores, Python {m['python']}, in {g['elapsed_s']:.0f} s by `{g['command']}` "
            f"(`docs/results/sim-report.json`).")


def knobs(report: dict[str, Any]) -> str:
    k = report["default_policy"]["knobs"]
    keys = ("target_wait_s", "headroom", "scale_down_stabilization_s", "cooldown_to_zero_s",
            "release_after_s", "keep_warm_fraction", "keep_warm_s", "tolerance")
    return "\n".join(f"- `{key}`: {k[key]:g}" for key in keys)


def sections(report: dict[str, Any]) -> dict[str, Callable[[], str]]:
    s = report["summary"]
    return {
        "provenance": lambda: provenance(report),
        "heldout": lambda: goal_table(s["report"]),
        "heldout-figures": lambda: figures_table(s["report"]),
        "readme": lambda: short_table(s["report"]) + "\n\n" + provenance(report),
        "tuning": lambda: goal_table(s["tuning"]),
        "knobs": lambda: knobs(report),
    }


def render(text: str, report: dict[str, Any]) -> str:
    for name, make in sections(report).items():
        tag = re.escape(name)
        pattern = re.compile(
            rf"(<!-- sim-report:{tag} -->\n)(?:.*?\n)?(<!-- /sim-report:{tag} -->)", re.S
        )
        body = make().replace("\\", "\\\\")
        text = pattern.sub(rf"\g<1>{body}\n\g<2>", text)
    return text


def rewrite(path: Path, report: dict[str, Any]) -> None:
    path.write_text(render(path.read_text(), report))
