"""Baseline policies for the simulator (pure): KEDA+HPA, the seed's step Lambda, SageMaker-like.

Each is written from the documented arithmetic, so the simulator compares the default policy with
what those systems would do, not with a straw man:

* `keda`: KEDA's aws-sqs-queue scaler (queueLength 5, activation 0, in-flight counted) feeding an
  HPA with no `behavior` (KEDA's default). KEDA polls every 30 s: it wakes 0→1 when
  backlog > activation and scales back to zero `cooldownPeriod` (300 s) after the last active
  poll. The HPA syncs every 15 s: usageRatio = backlog / (5 × current); outside ±10 % tolerance
  desired = ceil(backlog / 5); scale-up limited to max(2 × current, 4); scale-down takes the max
  recommendation over the last 300 s (pkg/controller/podautoscaler, replica_calculator.go
  GetExternalPerPodMetricReplicas and horizontal.go normalizeDesiredReplicas).
* `step`: the seed's Lambda (one a minute): +1 replica while > 100 messages are visible, −1 when
  the queue is empty. It never went below one replica (its GPU pool's minimum was 2 nodes).
* `sagemaker`: target tracking on backlog per instance (target 5): scale-out after 3 breaching
  1-minute datapoints, scale-in after 15, 300 s cooldowns; 0→1 when a "has backlog without
  capacity" alarm fires on two consecutive 60 s periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from scaler.policy import Decision, Observation, PolicyConfig, State, decide

KEDA_POLL_S = 30.0
HPA_SYNC_S = 15.0
HPA_TOLERANCE = 0.1
HPA_DOWNSCALE_STABILIZATION_S = 300.0
HPA_SCALE_UP_FACTOR = 2.0
HPA_SCALE_UP_MINIMUM = 4


class SimPolicy(Protocol):
    name: str
    interval_s: float
    cfg: PolicyConfig

    def initial_state(self) -> Any: ...

    def decide(self, obs: Observation, state: Any) -> tuple[int, str, Any]: ...


@dataclass
class DefaultPolicy:
    cfg: PolicyConfig
    #: the Lambda's default: 3 decisions per 1-minute invocation
    interval_s: float = 20.0
    name: str = "default"

    def initial_state(self) -> State:
        return State()

    def decide(self, obs: Observation, state: State) -> tuple[int, str, State]:
        d: Decision = decide(obs, state, self.cfg)
        return d.desired, d.reason, d.state


# ---------------------------------------------------------------- KEDA + HPA


def hpa_external_average_value(backlog: float, target: float, current: int) -> int:
    """HPA replica count for an External metric with an AverageValue target.

    replica_calculator.go GetExternalPerPodMetricReplicas: usageRatio = usage / (target × current);
    within the tolerance the count stays; else ceil(usage / target).
    """
    if current > 0:
        usage_ratio = backlog / (target * current)
        if abs(1.0 - usage_ratio) <= HPA_TOLERANCE:
            return current
    return math.ceil(backlog / target)


def hpa_scale_up_limit(current: int) -> int:
    """horizontal.go calculateScaleUpLimit (no behavior): max(2 × current, 4)."""
    return max(int(HPA_SCALE_UP_FACTOR * current), HPA_SCALE_UP_MINIMUM)


@dataclass(frozen=True)
class KedaState:
    recommendations: tuple[tuple[float, int], ...] = ()
    last_active: float | None = None
    last_poll: float | None = None


def hpa_normalize(
    raw: int,
    current: int,
    now: float,
    recs: tuple[tuple[float, int], ...],
    min_replicas: int,
    max_replicas: int,
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """horizontal.go normalizeDesiredReplicas: stabilize (max over 300 s), then limit and clamp."""
    kept = tuple((t, n) for t, n in recs if now - t < HPA_DOWNSCALE_STABILIZATION_S)
    kept = (*kept, (now, raw))
    stabilized = max(n for _, n in kept)
    limit = hpa_scale_up_limit(current)
    desired = max(min_replicas, min(stabilized, limit, max_replicas))
    return desired, kept


@dataclass
class KedaPolicy:
    cfg: PolicyConfig = field(default_factory=PolicyConfig)
    queue_length: float = 5.0
    activation: int = 0
    cooldown_s: float = 300.0
    interval_s: float = HPA_SYNC_S
    name: str = "keda"

    def initial_state(self) -> KedaState:
        return KedaState()

    def decide(self, obs: Observation, state: KedaState) -> tuple[int, str, KedaState]:
        backlog = obs.visible + obs.in_flight  # scaleOnInFlight true, scaleOnDelayed false
        current = obs.current
        keda_min = self.cfg.min_replicas
        hpa_min = max(keda_min, 1)
        # KEDA's own loop (every pollingInterval): activation and scale to/from zero
        if state.last_poll is None or obs.now - state.last_poll >= KEDA_POLL_S - 1e-9:
            active = backlog > self.activation
            last_active = obs.now if active else state.last_active
            state = replace(state, last_poll=obs.now, last_active=last_active)
            if current == 0:
                if active:
                    return hpa_min, f"keda: active ({backlog}) 0 -> {hpa_min}", state
                return 0, "keda: inactive at zero", state
            since = obs.now - (last_active if last_active is not None else -math.inf)
            if not active and keda_min == 0 and since >= self.cooldown_s:
                return 0, "keda: cooldown over -> 0", replace(state, recommendations=())
        if current == 0:
            return 0, "keda: waiting for activation", state
        raw = hpa_external_average_value(backlog, self.queue_length, current)
        desired, recs = hpa_normalize(
            raw, current, obs.now, state.recommendations, hpa_min, self.cfg.max_replicas
        )
        return desired, f"hpa: raw {raw} -> {desired}", replace(state, recommendations=recs)


# ---------------------------------------------------------------- the seed's step Lambda


@dataclass
class StepPolicy:
    cfg: PolicyConfig = field(default_factory=PolicyConfig)
    threshold: int = 100
    interval_s: float = 60.0
    name: str = "step"

    def initial_state(self) -> None:
        return None

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        low = max(self.cfg.min_replicas, 1)
        current = max(obs.current, low)
        if obs.visible > self.threshold:
            return min(current + 1, self.cfg.max_replicas), "step: > threshold, +1", None
        if obs.visible + obs.in_flight == 0:
            return max(current - 1, low), "step: empty, -1", None
        return current, "step: hold", None


# ---------------------------------------------------------------- SageMaker-like target tracking


@dataclass(frozen=True)
class SageMakerState:
    high_streak: int = 0
    low_streak: int = 0
    no_capacity_streak: int = 0
    last_scale_out: float | None = None
    last_scale_in: float | None = None


@dataclass
class SageMakerPolicy:
    cfg: PolicyConfig = field(default_factory=PolicyConfig)
    target: float = 5.0
    cooldown_s: float = 300.0
    out_datapoints: int = 3
    in_datapoints: int = 15
    interval_s: float = 60.0
    name: str = "sagemaker"

    def initial_state(self) -> SageMakerState:
        return SageMakerState()

    def decide(self, obs: Observation, st: SageMakerState) -> tuple[int, str, SageMakerState]:
        backlog = obs.visible + obs.in_flight
        current = obs.current
        low, high = self.cfg.min_replicas, self.cfg.max_replicas
        if current == 0:
            streak = st.no_capacity_streak + 1 if backlog > 0 else 0
            st = replace(st, no_capacity_streak=streak)
            if streak >= 2:
                st = replace(st, no_capacity_streak=0, last_scale_out=obs.now)
                return max(1, low), "sagemaker: backlog without capacity -> 1", st
            return 0, "sagemaker: at zero", st
        per_instance = backlog / current
        desired_tt = math.ceil(backlog / self.target)
        above = per_instance > self.target
        below = per_instance < 0.9 * self.target
        st = replace(
            st,
            high_streak=st.high_streak + 1 if above else 0,
            low_streak=st.low_streak + 1 if below else 0,
        )

        def cooled(t: float | None) -> bool:
            return t is None or obs.now - t >= self.cooldown_s

        if st.high_streak >= self.out_datapoints and desired_tt > current and cooled(
            st.last_scale_out
        ):
            desired = min(desired_tt, high)
            return desired, "sagemaker: scale-out", replace(st, last_scale_out=obs.now)
        if (
            st.low_streak >= self.in_datapoints
            and desired_tt < current
            and cooled(st.last_scale_in)
            and cooled(st.last_scale_out)
        ):
            desired = max(desired_tt, low)
            return desired, "sagemaker: scale-in", replace(st, last_scale_in=obs.now, low_streak=0)
        return current, "sagemaker: hold", st


def make_policy(name: str, cfg: PolicyConfig, tick_s: float | None = None) -> SimPolicy:
    if name == "default":
        return DefaultPolicy(cfg, interval_s=tick_s or 20.0)
    if name == "keda":
        return KedaPolicy(cfg)
    if name == "step":
        return StepPolicy(cfg)
    if name == "sagemaker":
        return SageMakerPolicy(cfg)
    raise ValueError(f"unknown policy {name!r} (default, keda, step, sagemaker)")


POLICY_NAMES = ("default", "keda", "step", "sagemaker")
