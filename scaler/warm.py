"""Keeping GPUs warm between bursts, learned from the traffic. Pure.

A burst that arrives with nothing warm waits out a GPU node's start-up (minutes) however fast it
is seen. Two memories decide what stays up while the queue is idle:

* the gaps: how long the last `GAPS_KEPT` idle stretches lasted before work came back. When most
  of them ended within `cooldown_to_zero_s`, replicas are kept for `GAP_MARGIN` × the longest of
  those (at most `cooldown_to_zero_s`): the next burst is likely to come while they are up. When
  they did not (batch jobs hours apart) or nothing is known yet, replicas go after
  `release_after_s`. Either way nothing is kept past `cooldown_to_zero_s` of idleness.
* the peak: the largest count a burst's arrivals kept busy within `keep_warm_s` (arrival rate ×
  (1 + headroom) ÷ drain rate: neither what the warm replicas left to do, which would shrink each
  floor after the last, nor the backlog a cold start piled up); a sliding maximum in
  WARM_BUCKETS buckets. `keep_warm_fraction` of it stays (at least one replica) while the queue
  is busy or within the hold.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scaler.policy_types import PolicyConfig

EPS = 1e-9
WARM_BUCKETS = 4
GAPS_KEPT = 4
GAP_MARGIN = 1.25

Peaks = tuple[tuple[float, int], ...]


def record_gap(
    gaps: tuple[float, ...], idle_since: float | None, now: float, active: bool
) -> tuple[tuple[float, ...], float | None]:
    """(gaps, idle_since) after this run: an idle stretch that just ended becomes a gap."""
    if active:
        if idle_since is not None and now > idle_since:
            gaps = (*gaps, now - idle_since)[-GAPS_KEPT:]
        return gaps, None
    return gaps, idle_since if idle_since is not None else now


def hold_s(gaps: tuple[float, ...], cfg: PolicyConfig) -> float:
    """How long replicas stay after the queue went idle."""
    short = [g for g in gaps if g <= cfg.cooldown_to_zero_s]
    if gaps and 2 * len(short) > len(gaps):
        learned = GAP_MARGIN * max(short)
        return min(cfg.cooldown_to_zero_s, max(cfg.release_after_s, learned))
    return min(cfg.release_after_s, cfg.cooldown_to_zero_s)


def update_peaks(peaks: Peaks, now: float, need: int, cfg: PolicyConfig) -> tuple[Peaks, int]:
    """(peaks to remember, the largest): a sliding maximum of `need` over `keep_warm_s`."""
    if cfg.keep_warm_s <= 0:
        return (), 0
    width = cfg.keep_warm_s / WARM_BUCKETS
    kept = [(t, n) for t, n in peaks if 0 <= now - t < cfg.keep_warm_s]
    if need > 0:
        if kept and now - kept[-1][0] < width:
            t, n = kept[-1]
            kept[-1] = (t, max(n, need))
        else:
            kept.append((now, need))
    return tuple(kept), max((n for _, n in kept), default=0)


def floor_of(peak: int, cfg: PolicyConfig) -> int:
    """Replicas kept warm for a peak: `keep_warm_fraction` of it, rounded down."""
    return math.floor(cfg.keep_warm_fraction * peak + EPS)
