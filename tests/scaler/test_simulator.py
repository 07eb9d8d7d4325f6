"""The simulator: its SQS queue model and node pool on hand-checkable cases, the metric lags, the
CLI's JSON, and the oracle as a bound on every shipped trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scaler.lineup import POLICY_NAMES, make_policy
from scaler.policy import Observation, PolicyConfig
from scaler.simmetrics import MinuteMetric, WaitHistogram, weighted_percentile
from scaler.simnodes import NodePool
from scaler.simpolicy import BasePolicy
from scaler.simulator import TRACES_DIR, SimConfig, load_trace, simulate
from scaler.tracegen import FAMILIES

ROOT = Path(__file__).resolve().parents[2]


class Script(BasePolicy):
    """Asks for `plan[t]` replicas from second t on (the last entry at or before t); records
    what it saw."""

    def __init__(self, plan: dict[int, int], live: bool = False) -> None:
        self.plan, self.cfg, self.name, self.interval_s = plan, PolicyConfig(), "script", 1.0
        self.sees_live_counts = live
        self.seen: list[Observation] = []

    def initial_state(self) -> None:
        return None

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        self.seen.append(obs)
        t = max(k for k in self.plan if k <= obs.now)
        return self.plan[t], "script", None


def test_waits_gpu_hours_and_startup_on_a_hand_checked_case() -> None:
    # 10 messages at t=0; one replica serving at t=5 draining 1 msg/s: waits 5..14 s
    arrivals = [10] + [0] * 29
    res = simulate(arrivals, Script({0: 1}), SimConfig(service_rate=1.0, startup_delay=5.0))
    assert res.max_wait_s == 14 and res.p50_wait_s == 9
    assert res.gpu_hours == round(30 / 3600, 3)  # the node bills from the request
    assert res.unserved == 0 and res.scale_events == 1


def test_unserved_messages_count_with_their_wait_so_far() -> None:
    res = simulate([5, 0, 0, 0], Script({0: 0}), SimConfig())
    assert res.unserved == 5 and res.max_wait_s == 4


def test_in_flight_is_what_the_replicas_received_and_have_not_deleted() -> None:
    # 2 msg/s and 10 s of work held: each serving replica receives up to 20 messages
    policy = Script({0: 2, 3: 1}, live=True)
    simulate([100] + [0] * 5, policy, SimConfig(service_rate=2.0), initial_replicas=2)
    first = policy.seen[0]
    assert (first.visible, first.in_flight) == (60, 40)
    # after 2 s of serving (8 deleted) the buffers are topped up: 52 + 40
    assert (policy.seen[2].visible, policy.seen[2].in_flight) == (52, 40)
    # one replica goes at t=3: what it held is released (visible again), in flight is 20
    assert (policy.seen[4].visible, policy.seen[4].in_flight) == (70 - 2 * 1 - 2, 20)


def test_counts_are_seen_late_and_ready_live() -> None:
    policy = Script({0: 0})
    simulate([0] * 20 + [50] + [0] * 30, policy, SimConfig(count_lag=15))
    by_t = {int(o.now): o for o in policy.seen}
    assert by_t[34].visible == 0 and by_t[35].visible == 50


def test_a_replica_on_a_lingering_node_serves_after_pod_start_and_the_node_bills() -> None:
    pool = NodePool(startup_delay=150, pod_start=30, linger_s=600, initial=1)
    pool.scale_to(0, 10)
    assert pool.billed == 1 and pool.serving == 0  # lingering, billed
    pool.scale_to(1, 100)
    pool.advance(129)
    assert pool.serving == 0
    pool.advance(130)
    assert pool.serving == 1 and pool.billed == 1  # reused: pod start, not node start-up
    pool.scale_to(2, 200)
    pool.advance(349)
    assert pool.serving == 1 and pool.billed == 2
    pool.advance(350)
    assert pool.serving == 2


def test_a_lingering_node_goes_after_linger_and_linger_zero_bills_nothing_after() -> None:
    pool = NodePool(startup_delay=150, pod_start=30, linger_s=600, initial=1)
    pool.scale_to(0, 10)
    pool.advance(609)
    assert pool.billed == 1
    pool.advance(610)
    assert pool.billed == 0
    eager = NodePool(startup_delay=150, pod_start=30, linger_s=0, initial=1)
    eager.scale_to(0, 10)
    assert eager.billed == 0


def test_gpu_hours_are_node_hours_linger_included() -> None:
    arrivals = [0] * 3600
    sim = SimConfig(node_linger_s=600)
    res = simulate(arrivals, Script({0: 1, 60: 0}), sim, initial_replicas=1)
    assert res.gpu_hours == round((60 + 600) / 3600, 3)
    off = simulate(arrivals, Script({0: 1, 60: 0}), SimConfig(node_linger_s=0), initial_replicas=1)
    assert off.gpu_hours == round(60 / 3600, 3)


def test_scale_down_removes_starting_replicas_first() -> None:
    pool = NodePool(startup_delay=150, pod_start=30, linger_s=600, initial=2)
    pool.scale_to(4, 0)
    pool.scale_to(2, 10)
    pool.advance(11)
    assert pool.serving == 2 and pool.replicas == 2


def test_startup_jitter_is_seeded() -> None:
    def ready_times(seed: int) -> list[float]:
        pool = NodePool(150, 30, 600, jitter_s=60, seed=seed)
        pool.scale_to(5, 0)
        return sorted(n.serving_at or 0.0 for n in pool.nodes)

    assert ready_times(1) == ready_times(1) != ready_times(2)
    assert all(150 <= t <= 210 for t in ready_times(3))


def test_cloudwatch_minutes_are_published_60_to_120_s_late() -> None:
    metric = MinuteMetric(60, 120, seed=0)
    for t in range(300):
        metric.add(t, 1.0)
    assert metric.published(119.9) == []
    assert metric.published(180.0)[0] == (0, 60.0)
    assert metric.newest_mean_per_s(300.0, 2) == 1.0


def test_wait_histogram_percentiles() -> None:
    h = WaitHistogram()
    h.add(1, 90)
    h.add(100, 10)
    assert h.percentile(0.95) == 100.0 and h.percentile(0.5) == 1.0 and h.maximum() == 100.0
    assert weighted_percentile([(1.0, 96), (100.0, 4)], 0.95) == 1.0


def test_sparse_traces_load_and_errors_name_the_line(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.csv"
    sparse.write_text("t,arrivals\n3,2\n10,1\n")
    assert load_trace(sparse) == [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("t,arrivals\n0,1\n1,x\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3"):
        load_trace(bad)
    bad.write_text("time,count\n0,1\n")
    with pytest.raises(ValueError, match="t,arrivals"):
        load_trace(bad)


@pytest.mark.parametrize("rate, delay", [(2.0, 150.0), (20.0, 180.0)])
def test_oracle_has_the_lowest_p95_on_every_shipped_trace(rate: float, delay: float) -> None:
    """A bound: if any policy beats the clairvoyant oracle, the model or the oracle is broken."""
    sim = SimConfig(service_rate=rate, startup_delay=delay)
    cfg = PolicyConfig(max_replicas=20, drain_rate_prior=rate, startup_delay_s=delay,
                       drain_reach_s=sim.drain_reach_s)
    assert {p.stem for p in TRACES_DIR.glob("*.csv")} == set(FAMILIES)
    for path in sorted(TRACES_DIR.glob("*.csv")):
        arrivals = load_trace(path)
        p95 = {
            name: simulate(arrivals, make_policy(name, cfg, sim, arrivals), sim).p95_wait_s
            for name in POLICY_NAMES
        }
        assert p95["oracle"] <= min(p95.values()), (path.stem, p95)


class AlwaysMax(BasePolicy):
    """No foresight at all: the most replicas from the start, never fewer."""

    name, interval_s = "always-max", 60.0

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg

    def initial_state(self) -> None:
        return None

    def start_replicas(self, requested: int | None) -> int:
        return self.cfg.max_replicas

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        return self.cfg.max_replicas, "max", None


def test_the_oracle_still_bounds_p95_when_a_burst_outruns_the_most_replicas() -> None:
    """300 messages in 5 s, above 20 replicas x 2 msg/s: the oracle's plan fell to 0 while the
    backlog waited and it shed replicas (p95 5 s); holding the maximum did better (3 s)."""
    sim = SimConfig(service_rate=2.0, startup_delay=150.0)
    cfg = PolicyConfig(max_replicas=20, drain_rate_prior=2.0)
    arrivals = [0] * 300 + [60] * 5 + [0] * 1200
    oracle = simulate(arrivals, make_policy("oracle", cfg, sim, arrivals), sim)
    always = simulate(arrivals, AlwaysMax(cfg), sim)
    assert oracle.p95_wait_s <= always.p95_wait_s, (oracle.p95_wait_s, always.p95_wait_s)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scaler", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_simulate_json_initial_replicas_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    proc = run_cli("simulate", "--trace", "ramp", "--policy", "default", "--initial-replicas",
                   "3", "--service-rate", "20", "--startup-delay", "180", "--node-linger-s", "0",
                   "--json", "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    assert set(summary) >= {"p50_wait_s", "p95_wait_s", "max_wait_s", "gpu_hours",
                            "max_backlog", "scale_events"}
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    # 3 replicas from t = 0 with an empty state: held for the window, then released (bug 1)
    assert summary["scale_events"] >= 1


def test_cli_keda_flags_reach_the_baseline() -> None:
    base = run_cli("simulate", "--trace", "bursty", "--policy", "keda", "--json")
    behaved = run_cli("simulate", "--trace", "bursty", "--policy", "keda", "--json",
                      "--keda-min-replicas", "2", "--hpa-scale-down", "Pods:1:60")
    assert base.returncode == behaved.returncode == 0, behaved.stderr
    assert json.loads(behaved.stdout)["gpu_hours"] > json.loads(base.stdout)["gpu_hours"]


def test_cli_simulate_missing_trace_exits_nonzero() -> None:
    proc = run_cli("simulate", "--trace", "/nonexistent.csv")
    assert proc.returncode != 0 and "nonexistent" in proc.stderr
