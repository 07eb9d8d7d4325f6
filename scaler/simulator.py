"""Replay a traffic trace through a scaling policy (the code the Lambda runs) and a queue model.

Pure: reads nothing but the trace file it is given, no clock. The model, one step per second:

* arrivals from the trace join a FIFO queue;
* each *ready* replica drains `service_rate` messages/s (fractions carry over); a message's wait is
  the time from its arrival until a replica starts it; whatever is still queued at the end counts
  with its wait so far (a policy that never serves is not flattered);
* a replica asked for at t serves from t + `startup_delay` (GPU node joins, image pulls, model
  loads); a scale-down removes starting replicas first, then ready ones;
* replicas hold up to `prefetch_s` seconds of work each: that part of the queue is "in flight"
  (invisible) as a real worker's receive buffer is;
* the policy sees SQS's approximate counts `count_lag` seconds late, ready replicas live, and (for
  the default policy) the CloudWatch 1-minute NumberOfMessagesDeleted `drain_lag` seconds late;
* GPU-hours count every replica the Deployment asks for, starting ones included (the node bills).
"""

from __future__ import annotations

import csv
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scaler.baselines import SimPolicy
from scaler.policy import Observation

TRACES_DIR = Path(__file__).with_name("traces")


@dataclass(frozen=True)
class SimConfig:
    service_rate: float = 2.0
    startup_delay: float = 150.0
    count_lag: float = 15.0
    drain_lag: float = 60.0
    drain_window: float = 60.0
    prefetch_s: float = 2.0
    use_drain_metric: bool = True


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
    """CSV `t,arrivals`: seconds since start, messages arriving in that second (gaps are zeros)."""
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


def weighted_percentile(pairs: list[tuple[float, int]], q: float) -> float:
    """Percentile of (value, count) pairs: the smallest value with >= q of the mass at or below."""
    total = sum(c for _, c in pairs)
    if total == 0:
        return 0.0
    need = q * total
    seen = 0
    for value, count in sorted(pairs):
        seen += count
        if seen >= need - 1e-9:
            return value
    return max(v for v, _ in pairs)


def simulate(
    arrivals: list[int],
    policy: SimPolicy,
    sim: SimConfig | None = None,
    trace_name: str = "trace",
    initial_replicas: int | None = None,
) -> SimResult:
    sim = sim or SimConfig()
    horizon = len(arrivals)
    queue: deque[list[int]] = deque()  # [arrival second, count]
    queued = 0
    ready_at: list[float] = []
    start = initial_replicas
    if start is None:
        start = max(policy.cfg.min_replicas, 1 if policy.name == "step" else 0)
    ready_at = [0.0] * start
    state = policy.initial_state()
    credit = 0.0
    waits: list[tuple[float, int]] = []
    deletes: list[int] = []
    visible_hist: list[int] = []
    inflight_hist: list[int] = []
    next_eval = 0.0
    gpu_seconds = 0.0
    scale_events = 0
    max_backlog = 0
    per_replica_hold = max(1, math.ceil(sim.service_rate * sim.prefetch_s))
    series: dict[str, list[float]] = {"arrivals": [], "backlog": [], "replicas": [], "ready": []}

    for t in range(horizon):
        if arrivals[t]:
            queue.append([t, arrivals[t]])
            queued += arrivals[t]
        ready = sum(1 for r in ready_at if r <= t)
        # observe before serving this second, like a scaler call landing at the top of it
        in_flight = min(queued, ready * per_replica_hold)
        visible_hist.append(queued - in_flight)
        inflight_hist.append(in_flight)
        max_backlog = max(max_backlog, queued)
        if t >= next_eval - 1e-9:
            seen = max(0, t - int(sim.count_lag))
            drained: float | None = None
            end = t - int(sim.drain_lag)
            if sim.use_drain_metric and end - sim.drain_window >= 0:
                window = deletes[int(end - sim.drain_window) : end]
                drained = sum(window) / len(window) if window else None
            obs = Observation(
                now=float(t),
                visible=visible_hist[seen],
                in_flight=inflight_hist[seen],
                delayed=0,
                current=len(ready_at),
                ready=ready,
                drained_per_s=drained,
            )
            desired, _reason, state = policy.decide(obs, state)
            if desired != len(ready_at):
                scale_events += 1
                if desired > len(ready_at):
                    ready_at += [t + sim.startup_delay] * (desired - len(ready_at))
                else:
                    ready_at.sort()
                    del ready_at[desired:]
            next_eval += policy.interval_s
            ready = sum(1 for r in ready_at if r <= t)
        gpu_seconds += len(ready_at)
        # serve
        credit += ready * sim.service_rate
        served = 0
        while queue and credit >= 1.0:
            head = queue[0]
            take = min(head[1], int(credit))
            waits.append((float(t - head[0]), take))
            head[1] -= take
            credit -= take
            served += take
            if head[1] == 0:
                queue.popleft()
        if not queue:
            credit = min(credit, 1.0)  # idle capacity is not banked
        queued -= served
        deletes.append(served)
        series["arrivals"].append(arrivals[t])
        series["backlog"].append(queued)
        series["replicas"].append(len(ready_at))
        series["ready"].append(ready)

    unserved = 0
    for arrived, count in queue:
        waits.append((float(horizon - arrived), count))
        unserved += count
    return SimResult(
        policy=policy.name,
        trace=trace_name,
        p50_wait_s=weighted_percentile(waits, 0.50),
        p95_wait_s=weighted_percentile(waits, 0.95),
        max_wait_s=max((w for w, _ in waits), default=0.0),
        gpu_hours=round(gpu_seconds / 3600.0, 3),
        max_backlog=max_backlog,
        scale_events=scale_events,
        messages=sum(arrivals),
        unserved=unserved,
        series=series,
    )


def plot(results: list[SimResult], out: str | Path, title: str = "") -> None:
    """Arrivals, backlog and replicas over time, one line per policy (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    first = results[0].series
    minutes = [t / 60.0 for t in range(len(first["arrivals"]))]
    per_min = [sum(first["arrivals"][i : i + 60]) / 60.0 for i in range(0, len(minutes), 60)]
    axes[0].step([i for i in range(len(per_min))], per_min, where="post", color="gray")
    axes[0].set_ylabel("arrivals (msg/s,\n1-min mean)")
    for res in results:
        label = f"{res.policy} (p95 {res.p95_wait_s:.0f}s, {res.gpu_hours:.1f} GPU-h)"
        axes[1].plot(minutes, res.series["backlog"], label=label, linewidth=1)
        axes[2].plot(minutes, res.series["replicas"], label=f"{res.policy} asked", linewidth=1)
        axes[2].plot(
            minutes, res.series["ready"], linestyle=":", linewidth=1, label=f"{res.policy} ready"
        )
    axes[1].set_ylabel("backlog (msgs)")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[2].set_ylabel("replicas")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper right", fontsize=8, ncol=2)
    fig.suptitle(title or f"trace {results[0].trace}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
