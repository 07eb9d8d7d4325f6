"""`make sim-report` on a tiny run: the JSON describes itself, the tables come from it."""

from __future__ import annotations

from scaler.report import build
from scaler.reportmd import render


def test_a_tiny_report_describes_itself_and_renders_its_tables() -> None:
    report = build(["bursty"], ((20.0, 180.0),), tuning=[0], report=[100], jobs=1, hours=0.5)
    gen = report["generated"]
    assert gen["git_commit"] and gen["machine"]["cores"] and gen["machine"]["python"]
    assert gen["date_utc"].endswith("Z") and report["definitions"]["goal"]
    assert report["default_policy"]["tuned_on_seeds"] == [0, 1, 2, 3, 4]
    [row] = report["summary"]["report"]
    [run] = report["runs"]["report"]
    assert row["runs"] == 1 and row["p95_vs_frontier"]["mean"] == run["p95_vs_frontier"]
    assert "keda" in run and "keda" not in report["runs"]["tuning"][0]  # all points only if plotted
    text = "a\n<!-- sim-report:heldout -->\nstale\n<!-- /sim-report:heldout -->\nb\n"
    out = render(text, report)
    assert "stale" not in out and out.startswith("a\n") and out.endswith("b\n")
    assert f"| bursty | 20 | 180 | {run['p95_vs_frontier']:.2f}" in out
    assert render(out, report) == out  # rewriting is idempotent
