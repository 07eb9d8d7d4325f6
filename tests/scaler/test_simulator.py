"""The simulator: its queue model on hand-checkable cases, and the README comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scaler.baselines import POLICY_NAMES, make_policy
from scaler.policy import Observation, PolicyConfig
from scaler.simulator import TRACES_DIR, SimConfig, load_trace, simulate, weighted_percentile

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Fixed:
    """A policy that always asks for n replicas (to check the queue model by hand)."""

    n: int
    cfg: PolicyConfig = field(default_factory=PolicyConfig)
    interval_s: float = 1.0
    name: str = "fixed"

    def initial_state(self) -> None:
        return None

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        return self.n, "fixed", None


def test_waits_gpu_hours_and_startup_on_a_hand_checked_case() -> None:
    # 10 messages at t=0; one replica ready at t=5 draining 1 msg/s: waits 5..14 s
    arrivals = [10] + [0] * 29
    res = simulate(arrivals, Fixed(1), SimConfig(service_rate=1.0, startup_delay=5.0))
    assert res.max_wait_s == 14 and res.p50_wait_s == 9
    assert res.gpu_hours == round(30 / 3600, 3)
    assert res.unserved == 0 and res.scale_events == 1


def test_unserved_messages_count_with_their_wait_so_far() -> None:
    res = simulate([5, 0, 0, 0], Fixed(0), SimConfig())
    assert res.unserved == 5 and res.max_wait_s == 4


def test_weighted_percentile() -> None:
    assert weighted_percentile([(1.0, 90), (100.0, 10)], 0.95) == 100.0
    assert weighted_percentile([(1.0, 96), (100.0, 4)], 0.95) == 1.0


def test_trace_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,arrivals\n0,1\n1,x\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3"):
        load_trace(bad)
    bad.write_text("time,count\n0,1\n")
    with pytest.raises(ValueError, match="t,arrivals"):
        load_trace(bad)


@pytest.mark.parametrize("trace", ["diurnal", "bursty", "idle-with-spikes", "ramp"])
def test_every_policy_serves_every_shipped_trace(trace: str) -> None:
    arrivals = load_trace(TRACES_DIR / f"{trace}.csv")
    cfg = PolicyConfig(max_replicas=20)
    for name in POLICY_NAMES:
        res = simulate(arrivals, make_policy(name, cfg), SimConfig(), trace)
        assert res.messages == sum(arrivals)
        assert max(res.series["replicas"]) <= 20


@pytest.mark.parametrize("trace", ["diurnal", "ramp"])
def test_default_halves_keda_p95_at_fewer_gpu_hours_on_smooth_traffic(trace: str) -> None:
    """The README's claim where it holds (bursty traces are start-up bound: see the README)."""
    arrivals = load_trace(TRACES_DIR / f"{trace}.csv")
    cfg = PolicyConfig(max_replicas=20)
    default = simulate(arrivals, make_policy("default", cfg), SimConfig(), trace)
    keda = simulate(arrivals, make_policy("keda", cfg), SimConfig(), trace)
    assert default.p95_wait_s <= 0.5 * keda.p95_wait_s
    assert default.gpu_hours <= keda.gpu_hours


@pytest.mark.parametrize("trace", ["bursty", "idle-with-spikes"])
def test_default_uses_fewer_gpu_hours_than_keda_on_bursts(trace: str) -> None:
    arrivals = load_trace(TRACES_DIR / f"{trace}.csv")
    cfg = PolicyConfig(max_replicas=20)
    default = simulate(arrivals, make_policy("default", cfg), SimConfig(), trace)
    keda = simulate(arrivals, make_policy("keda", cfg), SimConfig(), trace)
    assert default.gpu_hours < keda.gpu_hours
    assert default.p95_wait_s <= 1.15 * keda.p95_wait_s


def test_cli_simulate_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    proc = subprocess.run(
        [sys.executable, "-m", "scaler", "simulate", "--trace", str(TRACES_DIR / "ramp.csv"),
         "--policy", "keda", "--json", "--plot", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary) >= {"p50_wait_s", "p95_wait_s", "max_wait_s", "gpu_hours",
                            "max_backlog", "scale_events"}
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_cli_simulate_missing_trace_exits_nonzero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scaler", "simulate", "--trace", "/nonexistent.csv"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and "nonexistent" in proc.stderr
