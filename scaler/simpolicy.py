"""What the simulator needs from a policy, and the defaults most policies share. Pure."""

from __future__ import annotations

from typing import Any, Protocol

from scaler.policy import Observation, PolicyConfig


class SimPolicy(Protocol):
    name: str
    cfg: PolicyConfig
    #: the simulator computes SageMaker's 1-minute backlog metric only for a policy that reads it
    reads_backlog_metric: bool
    #: the references see the true queue: no count lag
    sees_live_counts: bool

    def initial_state(self) -> Any: ...

    def decide(self, obs: Observation, state: Any) -> tuple[int, str, Any]: ...

    def next_decision(self, now: float, state: Any) -> float:
        """When the policy wants to be asked next (the simulator rounds up to a second)."""
        ...

    def start_replicas(self, requested: int | None) -> int:
        """Replicas running at t = 0 (`--initial-replicas`, or the policy's own floor)."""
        ...


class BasePolicy:
    """Every `interval_s` seconds; starts at `cfg.min_replicas` unless told otherwise."""

    name = "base"
    interval_s = 60.0
    reads_backlog_metric = False
    sees_live_counts = False
    cfg: PolicyConfig

    def next_decision(self, now: float, state: Any) -> float:
        return now + self.interval_s

    def start_replicas(self, requested: int | None) -> int:
        return self.cfg.min_replicas if requested is None else max(0, requested)
