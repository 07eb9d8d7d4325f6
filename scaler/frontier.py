"""KEDA at its best on a trace: the Pareto frontier of (GPU-hours, p95 wait) over the ScaledObject
knobs a user would turn, and where the default policy lands against it. Pure but `plot`.

The sweep: queueLength {1, 2, 5, 10, 20, 40, 80, 160} × minReplicaCount {0, 1, 2, 3}, the other
knobs at KEDA's defaults, plus `keda-shipped` (deploy/k8s/components/keda). A point is on the
frontier when no other point has both fewer (or equal) GPU-hours and a lower (or equal) p95.

The two figures (defined everywhere):

* `p95_vs_frontier` = default's p95 ÷ the frontier's p95 at default's GPU-hours;
* `gpu_hours_vs_frontier` = default's GPU-hours ÷ the frontier's GPU-hours at default's p95.

The frontier is linear between its points (as if a user could mix two neighbouring configs,
which favours KEDA) and flat beyond its ends: below the cheapest point's GPU-hours its p95 is the
cheapest point's, above the dearest point's it is the dearest point's; at a p95 worse than the
cheapest point's its GPU-hours are the cheapest point's, at a p95 better than the best point's
they are the best point's. Two of those four ends favour KEDA (it is credited with a p95 it could
not reach on fewer GPU-hours, or a p95 it could not reach at all); the other two favour the
default (KEDA might buy a better p95 with more GPU-hours than its dearest point, or a worse p95
with fewer than its cheapest). So the goal (`goal_met`) counts a ratio only where the ends favour
KEDA: `p95_vs_frontier` only when the default uses no more GPU-hours than the dearest frontier
point, `gpu_hours_vs_frontier` only when its p95 is no worse than the cheapest point's. Both
ratios are reported either way, with `outside` saying where the default lies.
Waits are whole seconds in the model, so p95s below 1 s count as 1 s in the ratio (0 s against
0 s is 1.0, not 0/0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaler.keda import KedaConfig, KedaPolicy, shipped
from scaler.lineup import make_policy
from scaler.policy import PolicyConfig
from scaler.simulator import SimConfig, SimResult, simulate

QUEUE_LENGTHS = (1, 2, 5, 10, 20, 40, 80, 160)
MIN_REPLICAS = (0, 1, 2, 3)
P95_GOAL = 0.5
GPU_GOAL = 0.7


@dataclass(frozen=True)
class Point:
    label: str
    p95_wait_s: float
    gpu_hours: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "p95_wait_s": self.p95_wait_s, "gpu_hours": self.gpu_hours}


def point(res: SimResult, label: str | None = None) -> Point:
    return Point(label or res.policy, res.p95_wait_s, res.gpu_hours)


def keda_sweep(arrivals: list[int], sim: SimConfig, max_replicas: int) -> list[Point]:
    points = []
    for q in QUEUE_LENGTHS:
        for low in MIN_REPLICAS:
            keda = KedaConfig(queue_length=q, min_replicas=low, max_replicas=max_replicas)
            res = simulate(arrivals, KedaPolicy(keda, seed=sim.seed), sim)
            points.append(point(res, f"keda q={q} min={low}"))
    res = simulate(arrivals, KedaPolicy(shipped(), seed=sim.seed, name="keda-shipped"), sim)
    points.append(point(res))
    return points


def pareto(points: list[Point]) -> list[Point]:
    """The non-dominated points, cheapest first (p95 strictly falling along it)."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.gpu_hours, p.p95_wait_s)):
        if not out or p.p95_wait_s < out[-1].p95_wait_s:
            out.append(p)
    return out


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise linear through (xs, ys), xs ascending, flat beyond the ends."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    for i in range(1, len(xs)):
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def frontier_p95_at(front: list[Point], gpu_hours: float) -> float:
    return _interp(gpu_hours, [p.gpu_hours for p in front], [p.p95_wait_s for p in front])


def frontier_gpu_at(front: list[Point], p95: float) -> float:
    # along the frontier p95 falls as GPU-hours rise: interpolate on the reversed axis
    rev = front[::-1]
    return _interp(p95, [p.p95_wait_s for p in rev], [p.gpu_hours for p in rev])


def ratios(default: Point, front: list[Point]) -> tuple[float, float]:
    p95 = max(default.p95_wait_s, 1.0) / max(frontier_p95_at(front, default.gpu_hours), 1.0)
    gpu_ref = frontier_gpu_at(front, default.p95_wait_s)
    gpu = default.gpu_hours / gpu_ref if gpu_ref > 0 else 1.0
    return round(p95, 4), round(gpu, 4)


def goal(default: Point, front: list[Point]) -> tuple[float, float, bool, list[str]]:
    """(p95 ratio, GPU-hours ratio, goal met, where the default lies outside the frontier)."""
    p95, gpu = ratios(default, front)
    outside = []
    if default.gpu_hours > front[-1].gpu_hours:
        outside.append("more GPU-hours than the dearest KEDA point")
    if default.gpu_hours < front[0].gpu_hours:
        outside.append("fewer GPU-hours than the cheapest KEDA point")
    if default.p95_wait_s > front[0].p95_wait_s:
        outside.append("a worse p95 than the cheapest KEDA point")
    if default.p95_wait_s < front[-1].p95_wait_s:
        outside.append("a better p95 than the best KEDA point")
    by_p95 = p95 <= P95_GOAL and default.gpu_hours <= front[-1].gpu_hours
    by_gpu = gpu <= GPU_GOAL and default.p95_wait_s <= front[0].p95_wait_s
    return p95, gpu, by_p95 or by_gpu, outside


def compare(
    arrivals: list[int],
    sim: SimConfig,
    cfg: PolicyConfig,
    trace: str = "trace",
    keda_points: list[Point] | None = None,
) -> dict[str, Any]:
    """Everything `python -m scaler frontier --json` prints (keda_points: reuse a sweep)."""
    sweep = keda_points if keda_points is not None else keda_sweep(arrivals, sim, cfg.max_replicas)
    refs = {
        name: point(simulate(arrivals, make_policy(name, cfg, sim, arrivals), sim, trace))
        for name in ("default", "oracle", "reactive-ideal")
    }
    front = pareto(sweep)
    p95_ratio, gpu_ratio, met, outside = goal(refs["default"], front)

    def brief(p: Point) -> dict[str, float]:
        return {"p95_wait_s": p.p95_wait_s, "gpu_hours": p.gpu_hours}

    return {
        "trace": trace,
        "service_rate": sim.service_rate,
        "startup_delay": sim.startup_delay,
        "default": brief(refs["default"]),
        "oracle": brief(refs["oracle"]),
        "reactive_ideal": brief(refs["reactive-ideal"]),
        "keda_shipped": brief(next(p for p in sweep if p.label == "keda-shipped")),
        "frontier": [p.as_dict() for p in front],
        "keda": [p.as_dict() for p in sweep],
        "p95_vs_frontier": p95_ratio,
        "gpu_hours_vs_frontier": gpu_ratio,
        "goal_met": met,
        "outside": outside,
    }


def plot(result: dict[str, Any], out: str) -> None:
    """KEDA's configs, its frontier, the default and the two references (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.scatter([p["gpu_hours"] for p in result["keda"]], [p["p95_wait_s"] for p in result["keda"]],
               s=14, color="lightgray", label="KEDA configs")
    front = result["frontier"]
    ax.plot([p["gpu_hours"] for p in front], [p["p95_wait_s"] for p in front], "-o", ms=4,
            color="tab:blue", label="KEDA frontier")
    marks = (("default", "tab:red", "*"), ("oracle", "black", "v"),
             ("reactive_ideal", "tab:green", "s"), ("keda_shipped", "tab:purple", "D"))
    for key, color, marker in marks:
        p = result[key]
        ax.scatter([p["gpu_hours"]], [p["p95_wait_s"]], s=90 if key == "default" else 40,
                   color=color, marker=marker, label=key.replace("_", "-"), zorder=3)
    ax.set_xlabel("GPU-hours (node-hours)")
    ax.set_ylabel("p95 wait (s)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(
        f"{result['trace']}: {result['service_rate']:g} msg/s/replica, start-up "
        f"{result['startup_delay']:.0f} s\np95 vs frontier {result['p95_vs_frontier']:.2f}, "
        f"GPU-h vs frontier {result['gpu_hours_vs_frontier']:.2f}", fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
