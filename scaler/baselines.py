"""Simulator policies other than KEDA (scaler.keda) and the two references (scaler.references).

* `default`: the policy the Lambda runs (scaler.policy), one decision every 20 s (3 per
  1-minute invocation).
* `step`: the seed's Lambda (one a minute): +1 replica while > 100 messages are visible, −1 when
  the queue is empty. It never went below one replica (its GPU pool's minimum was 2 nodes).
* `sagemaker`: Application Auto Scaling as AWS's asynchronous-inference autoscaling example sets it
  up (docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html): target tracking on
  ApproximateBacklogSizePerInstance, target 5, ScaleOutCooldown 300 s, ScaleInCooldown 600 s, and
  the step policy on HasBacklogWithoutCapacity (2 of 2 one-minute datapoints, +1) for 0 → 1. The
  metric is the 1-minute mean backlog per instance, published 60–120 s late. The target tracking
  alarms are the ones AAS creates: 3 datapoints above the target to scale out, 15 below 90 % of it
  to scale in. A larger scale-out may happen inside the scale-out cooldown (AAS counts the capacity
  the first one added towards the next); no scale-in during either cooldown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scaler.policy import Decision, Observation, PolicyConfig, State, decide
from scaler.simpolicy import BasePolicy, SimPolicy

__all__ = ["DefaultPolicy", "SageMakerPolicy", "SimPolicy", "StepPolicy"]


class DefaultPolicy(BasePolicy):
    def __init__(self, cfg: PolicyConfig, interval_s: float = 20.0, name: str = "default") -> None:
        self.cfg, self.interval_s, self.name = cfg, interval_s, name

    def initial_state(self) -> State:
        return State()

    def decide(self, obs: Observation, state: State) -> tuple[int, str, State]:
        d: Decision = decide(obs, state, self.cfg)
        return d.desired, d.reason, d.state


class StepPolicy(BasePolicy):
    def __init__(self, cfg: PolicyConfig, threshold: int = 100) -> None:
        self.cfg, self.threshold, self.name, self.interval_s = cfg, threshold, "step", 60.0

    def initial_state(self) -> None:
        return None

    def start_replicas(self, requested: int | None) -> int:
        return max(1, self.cfg.min_replicas) if requested is None else requested

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        low = max(self.cfg.min_replicas, 1)
        current = max(obs.current, low)
        if obs.visible > self.threshold:
            return min(current + 1, self.cfg.max_replicas), "step: > threshold, +1", None
        if obs.visible + obs.in_flight == 0:
            return max(current - 1, low), "step: empty, -1", None
        return current, "step: hold", None


@dataclass(frozen=True)
class SageMakerState:
    last_scale_out: float | None = None
    last_out_target: int = 0
    last_scale_in: float | None = None
    last_step: float | None = None


class SageMakerPolicy(BasePolicy):
    reads_backlog_metric = True

    def __init__(
        self,
        cfg: PolicyConfig,
        target: float = 5.0,
        out_cooldown_s: float = 300.0,
        in_cooldown_s: float = 600.0,
        step_cooldown_s: float = 300.0,
    ) -> None:
        self.cfg, self.name, self.interval_s = cfg, "sagemaker", 60.0
        self.target = target
        self.out_cooldown_s, self.in_cooldown_s = out_cooldown_s, in_cooldown_s
        self.step_cooldown_s = step_cooldown_s

    def initial_state(self) -> SageMakerState:
        return SageMakerState()

    @staticmethod
    def _within(t: float | None, now: float, span: float) -> bool:
        return t is not None and now - t < span

    def decide(self, obs: Observation, st: SageMakerState) -> tuple[int, str, SageMakerState]:
        pts, now, current = obs.backlog_minutes, obs.now, obs.current
        low, high = self.cfg.min_replicas, self.cfg.max_replicas
        if current == 0:
            # HasBacklogWithoutCapacity >= 1 on 2 of 2 datapoints: step +1
            if len(pts) >= 2 and min(pts[-2:]) > 0 and not self._within(
                st.last_step, now, self.step_cooldown_s
            ):
                return max(1, low), "sagemaker: backlog without capacity -> 1", replace(
                    st, last_step=now, last_scale_out=now, last_out_target=max(1, low)
                )
            return 0, "sagemaker: at zero", st
        per_instance = [p / current for p in pts]
        newest = pts[-1] if pts else 0.0
        want = max(low, min(high, math.ceil(newest / self.target - 1e-9)))
        out_cooling = self._within(st.last_scale_out, now, self.out_cooldown_s)
        breaching = len(pts) >= 3 and min(per_instance[-3:]) > self.target
        if breaching and want > current and (not out_cooling or want > st.last_out_target):
            return want, "sagemaker: scale-out", replace(
                st, last_scale_out=now, last_out_target=want
            )
        in_cooling = self._within(st.last_scale_in, now, self.in_cooldown_s)
        if (
            len(pts) >= 15
            and max(per_instance[-15:]) < 0.9 * self.target
            and want < current
            and not in_cooling
            and not out_cooling
        ):
            return want, "sagemaker: scale-in", replace(st, last_scale_in=now)
        return current, "sagemaker: hold", st

