"""Regenerate the shipped traces in scaler/traces/ (seeded, so the files are reproducible).

    python -m scaler.tracegen            # rewrites scaler/traces/*.csv

Rates are messages per second; each second's count is Poisson around the rate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

TRACES_DIR = Path(__file__).with_name("traces")


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def diurnal(t: int) -> float:
    """A day compressed into 6 hours: a quiet night (0.3/s) and an afternoon peak (8/s)."""
    phase = 0.5 - 0.5 * math.cos(2 * math.pi * t / 21600)
    return 0.3 + 7.7 * phase**1.5


def _bursts(rng: random.Random, horizon: int) -> list[tuple[int, int, float]]:
    out, t = [], rng.randint(300, 900)
    while t < horizon - 600:
        length = rng.randint(180, 480)
        out.append((t, t + length, rng.uniform(10, 22)))
        t += length + rng.randint(900, 1800)
    return out


def generate(name: str, horizon: int, rate: Callable[[int], float], seed: int) -> list[int]:
    rng = random.Random(seed)
    return [poisson(rng, rate(t)) for t in range(horizon)]


def all_traces() -> dict[str, list[int]]:
    traces: dict[str, list[int]] = {}
    traces["diurnal"] = generate("diurnal", 21600, diurnal, seed=1)

    rng = random.Random(2)
    bursts = _bursts(rng, 14400)

    def bursty(t: int) -> float:
        return 1.0 + sum(r for a, b, r in bursts if a <= t < b)

    traces["bursty"] = generate("bursty", 14400, bursty, seed=3)

    rng = random.Random(4)
    spikes, t = [], rng.randint(600, 1200)
    while t < 14400 - 900:
        spikes.append((t, rng.randint(200, 800)))
        t += rng.randint(1500, 2700)
    idle = [0] * 14400
    for start, total in spikes:
        for _ in range(total):
            idle[start + rng.randint(0, 29)] += 1
    for second in range(14400):
        if rng.random() < 1 / 600:  # a stray message every ~10 min
            idle[second] += 1
    traces["idle-with-spikes"] = idle

    def ramp(t: int) -> float:
        if t < 600:
            return 0.0
        if t < 600 + 5400:
            return 12.0 * (t - 600) / 5400
        if t < 7800:
            return 12.0
        if t < 8400:
            return 12.0 * (8400 - t) / 600
        return 0.0

    traces["ramp"] = generate("ramp", 10800, ramp, seed=5)
    return traces


def main() -> None:
    TRACES_DIR.mkdir(exist_ok=True)
    for name, counts in all_traces().items():
        path = TRACES_DIR / f"{name}.csv"
        with open(path, "w") as fh:
            fh.write("t,arrivals\n")
            last = len(counts) - 1  # keep the trailing idle time in the file
            fh.writelines(f"{t},{n}\n" for t, n in enumerate(counts) if n or t == last)
        print(f"{path}: {len(counts)} s, {sum(counts)} messages")


if __name__ == "__main__":
    main()
