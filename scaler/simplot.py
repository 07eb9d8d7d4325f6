"""Arrivals, backlog and replicas over time, one line per policy (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from scaler.simulator import SimResult


def plot_series(results: list[SimResult], out: str | Path, title: str = "") -> None:
    """Needs results simulated with `record=True`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    first = results[0].series
    minutes = [t / 60.0 for t in range(len(first["arrivals"]))]
    per_min = [sum(first["arrivals"][i : i + 60]) / 60.0 for i in range(0, len(minutes), 60)]
    axes[0].step(list(range(len(per_min))), per_min, where="post", color="gray")
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
