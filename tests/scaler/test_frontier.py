"""KEDA's frontier: Pareto points, the two ratios and their out-of-range definitions, the CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from scaler.frontier import Point, frontier_gpu_at, frontier_p95_at, pareto, ratios

ROOT = Path(__file__).resolve().parents[2]
FRONT = [Point("a", 100.0, 10.0), Point("b", 40.0, 20.0), Point("c", 10.0, 40.0)]


def test_pareto_keeps_only_undominated_points_cheapest_first() -> None:
    pts = [*FRONT, Point("dominated", 50.0, 30.0), Point("tie-worse", 100.0, 12.0)]
    assert [p.label for p in pareto(pts)] == ["a", "b", "c"]


def test_interpolation_is_linear_inside_and_flat_beyond_the_ends() -> None:
    assert frontier_p95_at(FRONT, 15.0) == 70.0
    assert frontier_p95_at(FRONT, 5.0) == 100.0  # cheaper than any KEDA config: its p95
    assert frontier_p95_at(FRONT, 80.0) == 10.0  # dearer than any: the best p95
    assert frontier_gpu_at(FRONT, 70.0) == 15.0
    assert frontier_gpu_at(FRONT, 500.0) == 10.0  # worse than the cheapest point
    assert frontier_gpu_at(FRONT, 1.0) == 40.0  # better than the best point


def test_ratios_floor_p95s_at_one_second() -> None:
    assert ratios(Point("d", 35.0, 15.0), FRONT) == (0.5, round(15.0 / frontier_gpu_at(FRONT,
                                                                                         35.0), 4))
    zero = [Point("z", 0.0, 8.0)]
    assert ratios(Point("d", 0.0, 8.0), zero) == (1.0, 1.0)  # 0 s against 0 s
    assert ratios(Point("d", 3.0, 4.0), zero) == (3.0, 0.5)


def test_cli_frontier_json_has_the_documented_keys(tmp_path: Path) -> None:
    out = tmp_path / "front.png"
    proc = subprocess.run(
        [sys.executable, "-m", "scaler", "frontier", "--trace", "ramp", "--service-rate", "20",
         "--startup-delay", "180", "--json", "--plot", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= {"default", "oracle", "reactive_ideal", "frontier",
                           "p95_vs_frontier", "gpu_hours_vs_frontier"}
    for key in ("default", "oracle", "reactive_ideal"):
        assert set(result[key]) == {"p95_wait_s", "gpu_hours"}
    front = result["frontier"]
    assert front and all(a["gpu_hours"] <= b["gpu_hours"] and a["p95_wait_s"] > b["p95_wait_s"]
                         for a, b in itertools.pairwise(front))
    assert len(result["keda"]) == 33  # 8 queueLengths x 4 minReplicaCounts + keda-shipped
    assert out.read_bytes()[:4] == b"\x89PNG"
