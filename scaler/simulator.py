"""Replay a traffic trace through a scaling policy (the code the Lambda runs) and a model of SQS.

Pure: no clock, no I/O but reading the trace file it is given. One step per second (idle
stretches skipped in one step):

* arrivals join the queue (visible);
* each *serving* replica receives into a buffer of up to `hold_s` seconds of its service rate
  (what worker/pipeline.py holds: MAX_HOLD_WORK_S = 10), serves FIFO at `service_rate`, deletes on
  completion. In flight = received and not yet deleted. A replica that goes away releases what it
  held (the worker's SIGTERM path: visibility 0), so it is visible again. All replicas take from
  the queue's head and serve in arrival order, so the whole system is FIFO: three counters
  (arrived, received, deleted) describe it exactly.
* a message's wait is from its arrival second until a replica starts it; whatever is still
  queued at the end counts with its wait so far (a policy that never serves is not flattered);
* replicas sit on GPU nodes (scaler.simnodes: start-up, linger, pod start, jitter); GPU-hours are
  node-hours, the same for every policy;
* the policy sees SQS's counts `count_lag` seconds late and the ready count live; CloudWatch's
  NumberOfMessagesDeleted as 1-minute sums published 60–120 s late (the newest two published
  minutes averaged, as scaler.drain.CloudWatchDrain does); SageMaker's backlog metric likewise.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scaler.policy import Observation
from scaler.simmetrics import MinuteMetric, WaitHistogram, weighted_percentile
from scaler.simnodes import NodePool
from scaler.simpolicy import SimPolicy

__all__ = ["TRACES_DIR", "SimConfig", "SimResult", "load_trace", "simulate", "weighted_percentile"]

TRACES_DIR = Path(__file__).with_name("traces")


@dataclass(frozen=True)
class SimConfig:
    service_rate: float = 2.0
    startup_delay: float = 150.0
    startup_jitter_s: float = 0.0
    pod_start: float = 30.0
    node_linger_s: float = 600.0
    hold_s: float = 10.0
    count_lag: float = 15.0
    metric_lag_min: float = 60.0
    metric_lag_max: float = 120.0
    drain_minutes: int = 2
    use_drain_metric: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.service_rate <= 0 or self.hold_s < 0 or self.count_lag < 0:
            raise ValueError("need service_rate > 0, hold_s >= 0, count_lag >= 0")

    @property
    def drain_reach_s(self) -> float:
        """How far back the modelled drain figure reaches (its lag plus its minutes)."""
        return self.metric_lag_max + 60.0 * self.drain_minutes


@dataclass
class SimResult:
    policy: str
    trace: str
    p50_wait_s: float
    p95_wait_s: float
    max_wait_s: float
    gpu_hours: float
    max_backlog: int
    scale_events: int
    messages: int
    unserved: int
    series: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("series")
        return out


def load_trace(path: str | Path) -> list[int]:
    """CSV `t,arrivals`: seconds since start, messages arriving in that second.

    Sparse files load: a second missing from the file had no arrivals.
    """
    rows: dict[int, int] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"t", "arrivals"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a CSV header 't,arrivals'")
        for line_no, row in enumerate(reader, start=2):
            try:
                t, n = int(float(row["t"])), int(float(row["arrivals"]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line_no}: bad row {row!r}") from exc
            if t < 0 or n < 0:
                raise ValueError(f"{path}:{line_no}: t and arrivals must be >= 0")
            rows[t] = rows.get(t, 0) + n
    if not rows:
        raise ValueError(f"{path}: no rows")
    arrivals = [0] * (max(rows) + 1)
    for t, n in rows.items():
        arrivals[t] = n
    return arrivals


class _Waits:
    """Walks the arrival seconds in FIFO order as messages are served."""

    def __init__(self, arrivals: list[int]) -> None:
        self.arrivals = arrivals
        self.hist = WaitHistogram()
        self.sec = 0
        self.left = arrivals[0] if arrivals else 0

    def serve(self, count: int, t: int) -> None:
        while count > 0:
            while self.left == 0:
                self.sec += 1
                self.left = self.arrivals[self.sec]
            take = min(count, self.left)
            self.hist.add(t - self.sec, take)
            self.left -= take
            count -= take

    def unserved_until(self, horizon: int) -> None:
        while self.sec < len(self.arrivals):
            if self.left:
                self.hist.add(horizon - self.sec, self.left)
            self.sec += 1
            self.left = self.arrivals[self.sec] if self.sec < len(self.arrivals) else 0


def simulate(
    arrivals: list[int],
    policy: SimPolicy,
    sim: SimConfig | None = None,
    trace_name: str = "trace",
    initial_replicas: int | None = None,
    record: bool = False,
) -> SimResult:
    sim = sim or SimConfig()
    horizon = len(arrivals)
    rate = sim.service_rate
    hold = max(1, math.ceil(rate * sim.hold_s))
    lag = int(sim.count_lag)
    pool = NodePool(
        sim.startup_delay, sim.pod_start, sim.node_linger_s, sim.startup_jitter_s,
        seed=sim.seed, initial=policy.start_replicas(initial_replicas),
    )
    deletes = MinuteMetric(sim.metric_lag_min, sim.metric_lag_max, seed=sim.seed + 1)
    backlog_metric = MinuteMetric(sim.metric_lag_min, sim.metric_lag_max, seed=sim.seed + 2)
    reads_backlog = policy.reads_backlog_metric
    waits = _Waits(arrivals)
    state = policy.initial_state()
    visible = [0] * horizon
    in_flight = [0] * horizon
    busy = [t for t, n in enumerate(arrivals) if n]
    busy_i = 0
    series: dict[str, list[float]] = {"arrivals": [], "backlog": [], "replicas": [], "ready": []}
    arrived = received = deleted = 0
    credit = 0.0
    next_eval = 0.0
    node_seconds = 0.0
    scale_events = max_backlog = 0
    t = 0
    while t < horizon:
        # idle stretch: nothing queued, no arrival, no decision or node event due: one step
        if arrived == deleted and not arrivals[t]:
            while busy_i < len(busy) and busy[busy_i] < t:
                busy_i += 1
            nxt = busy[busy_i] if busy_i < len(busy) else horizon
            end = int(min(nxt, math.ceil(min(next_eval, pool.next_event, horizon)), horizon))
            if end > t + 1:
                node_seconds += pool.billed * (end - t)
                deletes.add(end - 1, 0.0)
                if reads_backlog:
                    backlog_metric.add(end - 1, 0.0)
                if record:
                    for key, value in (("arrivals", 0), ("backlog", 0), ("replicas",
                                       pool.replicas), ("ready", pool.serving)):
                        series[key].extend([value] * (end - t))
                credit = 0.0
                t = end
                continue
        arrived += arrivals[t]
        pool.advance(t)
        received = min(arrived, deleted + pool.serving * hold)
        visible[t], in_flight[t] = arrived - received, received - deleted
        max_backlog = max(max_backlog, arrived - deleted)
        if reads_backlog:
            backlog_metric.add(t, arrived - deleted)
        if t >= next_eval - 1e-9:
            seen = t if policy.sees_live_counts else max(0, t - lag)
            obs = Observation(
                now=float(t),
                visible=visible[seen],
                in_flight=in_flight[seen],
                delayed=0,
                current=pool.replicas,
                ready=pool.serving,
                drained_per_s=deletes.newest_mean_per_s(t, sim.drain_minutes)
                if sim.use_drain_metric
                else None,
                backlog_minutes=tuple(v / 60.0 for _, v in backlog_metric.published(t))
                if reads_backlog
                else (),
            )
            desired, _reason, state = policy.decide(obs, state)
            if desired != pool.replicas:
                scale_events += 1
                pool.scale_to(desired, t)
                received = min(arrived, deleted + pool.serving * hold)
            next_eval = max(t + 1.0, policy.next_decision(float(t), state))
        node_seconds += pool.billed
        credit += pool.serving * rate
        served = min(received - deleted, int(credit))
        if served:
            waits.serve(served, t)
            deleted += served
            credit -= served
        if received == deleted:
            credit = min(credit, 1.0)  # idle capacity is not banked
        deletes.add(t, served)
        if record:
            series["arrivals"].append(arrivals[t])
            series["backlog"].append(arrived - deleted)
            series["replicas"].append(pool.replicas)
            series["ready"].append(pool.serving)
        t += 1
    unserved = arrived - deleted
    waits.unserved_until(horizon)
    hist = waits.hist
    return SimResult(
        policy=policy.name,
        trace=trace_name,
        p50_wait_s=hist.percentile(0.50),
        p95_wait_s=hist.percentile(0.95),
        max_wait_s=hist.maximum(),
        gpu_hours=round(node_seconds / 3600.0, 3),
        max_backlog=max_backlog,
        scale_events=scale_events,
        messages=sum(arrivals),
        unserved=unserved,
        series=series,
    )
