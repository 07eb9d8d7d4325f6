"""The HorizontalPodAutoscaler's arithmetic for one External AverageValue metric. Pure.

Written from kubernetes pkg/controller/podautoscaler (replica_calculator.go
GetExternalPerPodMetricReplicas; horizontal.go stabilizeRecommendation, normalizeDesiredReplicas,
convertDesiredReplicasWithRules for an HPA without `behavior`; stabilizeRecommendationWithBehaviors,
convertDesiredReplicasWithBehaviorRate, calculateScaleUpLimitWithScalingRules,
calculateScaleDownLimitWithBehaviors, getReplicasChangePerPeriod with one):

* usageRatio = usage / (target × current); within ±tolerance the count stays, else
  ceil(usage / target);
* without `behavior`: the max of the recommendations not older than 300 s (a sample exactly 300 s
  old is still in: Go's `Before(cutoff)` drops only older ones), scale-up limited to
  max(2 × current, 4) per sync;
* with `behavior`: a scale-up window (min of the recent recommendations) and a scale-down window
  (max), samples strictly newer than the cutoff (`After(cutoff)`); then the rate policies (Pods or
  Percent per period, `selectPolicy` Max / Min / Disabled) against the scale events of each period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

TOLERANCE = 0.1
DOWNSCALE_STABILIZATION_S = 300.0
SCALE_UP_FACTOR = 2.0
SCALE_UP_MINIMUM = 4
SYNC_S = 15.0

Select = Literal["Max", "Min", "Disabled"]


@dataclass(frozen=True)
class RatePolicy:
    kind: Literal["Pods", "Percent"]
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.kind not in ("Pods", "Percent") or self.value <= 0 or self.period_s <= 0:
            raise ValueError(f"bad HPA scaling policy {self}")


@dataclass(frozen=True)
class ScalingRules:
    window_s: float
    policies: tuple[RatePolicy, ...]
    select: Select = "Max"


# what the API server fills in for a `behavior` that leaves a direction out (autoscaling/v2)
DEFAULT_SCALE_UP = ScalingRules(0.0, (RatePolicy("Pods", 4, 15), RatePolicy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = ScalingRules(DOWNSCALE_STABILIZATION_S, (RatePolicy("Percent", 100, 15),))


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class HpaState:
    recommendations: tuple[tuple[float, int], ...] = ()
    up_events: tuple[tuple[float, int], ...] = ()
    down_events: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int = 1
    max_replicas: int = 10
    behavior: Behavior | None = None
    tolerance: float = TOLERANCE


def external_average_value(
    usage: float, target: float, current: int, tol: float = TOLERANCE
) -> int:
    """replica_calculator.go GetExternalPerPodMetricReplicas (AverageValue target)."""
    if current > 0 and abs(1.0 - usage / (target * current)) <= tol:
        return current
    return math.ceil(usage / target)


def scale_up_limit(current: int) -> int:
    """horizontal.go calculateScaleUpLimit (no behavior): max(2 × current, 4)."""
    return int(max(SCALE_UP_FACTOR * current, SCALE_UP_MINIMUM))


def _change_in_period(events: tuple[tuple[float, int], ...], now: float, period: float) -> int:
    return sum(n for t, n in events if t > now - period)  # After(cutoff): strictly newer


def rate_limit(current: int, st: HpaState, rules: ScalingRules, now: float, up: bool) -> int:
    """calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for pol in rules.policies:
        start = (
            current
            - _change_in_period(st.up_events, now, pol.period_s)
            + _change_in_period(st.down_events, now, pol.period_s)
        )
        if pol.kind == "Pods":
            step = start + pol.value if up else start - pol.value
        elif up:  # rounded up, or a small Deployment would never grow
            step = math.ceil(start * (1 + pol.value / 100))
        else:
            step = int(start * (1 - pol.value / 100))
        proposals.append(step)
    most_change = max if up else min
    least_change = min if up else max
    return (least_change if rules.select == "Min" else most_change)(proposals)


def _stabilize_plain(raw: int, now: float, st: HpaState) -> tuple[int, HpaState]:
    kept = tuple((t, n) for t, n in st.recommendations if t >= now - DOWNSCALE_STABILIZATION_S)
    stabilized = max((n for _, n in kept), default=raw)
    return max(stabilized, raw), replace(st, recommendations=(*kept, (now, raw)))


def _stabilize_behavior(
    raw: int, current: int, now: float, st: HpaState, b: Behavior
) -> tuple[int, HpaState]:
    up_w, down_w = b.scale_up.window_s, b.scale_down.window_s
    up = min([raw, *(n for t, n in st.recommendations if t > now - up_w)])
    down = max([raw, *(n for t, n in st.recommendations if t > now - down_w)])
    rec = min(max(current, up), down)
    keep = max(up_w, down_w)
    kept = tuple((t, n) for t, n in st.recommendations if t >= now - keep)
    return rec, replace(st, recommendations=(*kept, (now, raw)))


def normalize(
    raw: int, current: int, now: float, st: HpaState, spec: HpaSpec
) -> tuple[int, HpaState]:
    """One sync's desired count from the raw recommendation; the new HPA memory."""
    b = spec.behavior
    if b is None:
        stabilized, st = _stabilize_plain(raw, now, st)
        high = min(spec.max_replicas, scale_up_limit(current))
        desired = max(spec.min_replicas, min(stabilized, high))
        return desired, st
    stabilized, st = _stabilize_behavior(raw, current, now, st, b)
    desired = stabilized
    if stabilized > current:
        limit = max(current, rate_limit(current, st, b.scale_up, now, up=True))
        desired = min(stabilized, spec.max_replicas, limit)
    elif stabilized < current:
        limit = min(current, rate_limit(current, st, b.scale_down, now, up=False))
        desired = max(stabilized, spec.min_replicas, limit)
    desired = max(spec.min_replicas, min(spec.max_replicas, desired))
    return desired, record_scale(st, b, current, desired, now)


def record_scale(st: HpaState, b: Behavior, prev: int, new: int, now: float) -> HpaState:
    """storeScaleEvent: the change, kept for the longest period of its direction's policies."""
    if new == prev:
        return st
    rules = b.scale_up if new > prev else b.scale_down
    longest = max((p.period_s for p in rules.policies), default=0.0)
    if new > prev:
        ups = tuple(e for e in st.up_events if e[0] > now - longest)
        return replace(st, up_events=(*ups, (now, new - prev)))
    downs = tuple(e for e in st.down_events if e[0] > now - longest)
    return replace(st, down_events=(*downs, (now, prev - new)))


def parse_policies(text: str) -> tuple[RatePolicy, ...]:
    """`Pods:4:60,Percent:100:15` → rate policies (the CLI's --hpa-scale-up/down)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bits = part.split(":")
        if len(bits) != 3 or bits[0] not in ("Pods", "Percent"):
            raise ValueError(f"HPA policy {part!r}: expected Pods:N:SECONDS or Percent:N:SECONDS")
        out.append(RatePolicy(bits[0], int(bits[1]), float(bits[2])))  # type: ignore[arg-type]
    return tuple(out)
