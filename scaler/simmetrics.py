"""What the simulated scaler can measure, and how the simulator scores waits. Pure, no I/O.

* `MinuteMetric`: a CloudWatch-like 1-minute statistic. Per-second values are summed into minute
  buckets; each bucket is published a seeded 60–120 s after its minute ends (what CloudWatch does
  with SQS's NumberOfMessagesDeleted and SageMaker's ApproximateBacklogSizePerInstance). A reader
  sees only published minutes.
* `WaitHistogram`: per-message waits in whole seconds, kept as counts per wait, so a trace of a
  million messages costs a list of a few thousand integers; nearest-rank percentiles.
"""

from __future__ import annotations

import random
from collections import deque


class MinuteMetric:
    """1-minute sums, each published at minute end + U(lag_min, lag_max) seconds."""

    def __init__(self, lag_min: float, lag_max: float, seed: int, keep: int = 16) -> None:
        if not 0 <= lag_min <= lag_max:
            raise ValueError("need 0 <= lag_min <= lag_max")
        self._rng = random.Random(seed)
        self._lag = (lag_min, lag_max)
        self._minute = 0
        self._sum = 0.0
        self._pending: deque[tuple[float, int, float]] = deque()  # (published at, minute, sum)
        self._published: deque[tuple[int, float]] = deque(maxlen=keep)

    def add(self, t: int, value: float) -> None:
        """Account second `t` (in time order; seconds not added count as 0)."""
        minute = t // 60
        while minute > self._minute:  # a skipped idle stretch publishes its empty minutes too
            end = (self._minute + 1) * 60.0
            lag = self._rng.uniform(*self._lag)
            self._pending.append((end + lag, self._minute, self._sum))
            self._minute, self._sum = self._minute + 1, 0.0
        self._sum += value

    def published(self, now: float) -> list[tuple[int, float]]:
        """(minute, sum) pairs published by `now`, oldest first."""
        while self._pending and self._pending[0][0] <= now:
            _, minute, total = self._pending.popleft()
            self._published.append((minute, total))
        # publication order can differ from minute order by a little: present them sorted
        return sorted(self._published)

    def newest_mean_per_s(self, now: float, minutes: int) -> float | None:
        """Mean per second over the newest `minutes` published minutes (CloudWatchDrain's)."""
        pts = self.published(now)[-minutes:]
        if not pts:
            return None
        return sum(total for _, total in pts) / (60.0 * len(pts))


class WaitHistogram:
    def __init__(self) -> None:
        self.counts: list[int] = []
        self.total = 0

    def add(self, wait: int, count: int) -> None:
        if wait >= len(self.counts):
            self.counts.extend([0] * (wait + 1 - len(self.counts)))
        self.counts[wait] += count
        self.total += count

    def percentile(self, q: float) -> float:
        """The smallest wait with at least q of the messages at or below it (nearest rank)."""
        if self.total == 0:
            return 0.0
        need = q * self.total - 1e-9
        seen = 0
        for wait, count in enumerate(self.counts):
            seen += count
            if seen >= need and count:
                return float(wait)
        return float(len(self.counts) - 1)

    def maximum(self) -> float:
        for wait in range(len(self.counts) - 1, -1, -1):
            if self.counts[wait]:
                return float(wait)
        return 0.0


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
