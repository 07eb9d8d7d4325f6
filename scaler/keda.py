"""KEDA's aws-sqs-queue scaler feeding an HPA, as a simulator policy. Pure (but `shipped()`).

From kedacore/keda (pkg/scalers/aws_sqs_queue_scaler.go,
pkg/scaling/executor/scale_scaledobjects.go) and the HPA (scaler.hpa):

* backlog = visible + in-flight (`scaleOnInFlight`, default true); active when backlog >
  `activationQueueLength`;
* KEDA's own loop, every `pollingInterval`: 0 → max(minReplicaCount, 1) when active; records the
  last active time; with `minReplicaCount` 0, → 0 once `cooldownPeriod` has passed since the last
  active poll, strictly (`LastActiveTime.Add(cooldown).Before(now)`), at the next poll after that;
* the HPA (min = max(minReplicaCount, 1)) syncs every 15 s at a fixed phase, seeded: the first sync
  after KEDA's 0 → 1 lands anywhere within 15 s of it. It does nothing at 0 replicas.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaler.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    SYNC_S,
    Behavior,
    HpaSpec,
    HpaState,
    RatePolicy,
    ScalingRules,
    external_average_value,
    normalize,
)
from scaler.policy import Observation, PolicyConfig
from scaler.simpolicy import BasePolicy

EPS = 1e-9
SHIPPED = Path(__file__).resolve().parents[1] / "deploy/k8s/components/keda/scaledobject.yaml"


@dataclass(frozen=True)
class KedaConfig:
    """A ScaledObject's knobs (KEDA's defaults) and the HPA `behavior` it passes on."""

    queue_length: float = 5.0
    activation: float = 0.0
    min_replicas: int = 0
    max_replicas: int = 20
    polling_s: float = 30.0
    cooldown_s: float = 300.0
    behavior: Behavior | None = None
    scale_on_in_flight: bool = True

    def __post_init__(self) -> None:
        if self.queue_length <= 0 or self.polling_s <= 0 or self.cooldown_s < 0:
            raise ValueError("need queueLength > 0, pollingInterval > 0, cooldownPeriod >= 0")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError("need 0 <= minReplicaCount <= maxReplicaCount, maxReplicaCount >= 1")


@dataclass(frozen=True)
class KedaState:
    hpa: HpaState = field(default_factory=HpaState)
    last_active: float | None = None
    next_poll: float = 0.0
    next_sync: float = 0.0


class KedaPolicy(BasePolicy):
    def __init__(self, keda: KedaConfig | None = None, seed: int = 0, name: str = "keda") -> None:
        self.keda = keda or KedaConfig()
        self.name = name
        self.cfg = PolicyConfig(
            min_replicas=self.keda.min_replicas, max_replicas=self.keda.max_replicas
        )
        self.phase = float(random.Random(f"hpa-phase-{seed}").randrange(int(SYNC_S)))
        self.spec = HpaSpec(
            min_replicas=max(1, self.keda.min_replicas),
            max_replicas=self.keda.max_replicas,
            behavior=self.keda.behavior,
        )

    def initial_state(self) -> KedaState:
        return KedaState(next_sync=self.phase)

    def next_decision(self, now: float, state: KedaState) -> float:
        return min(state.next_poll, state.next_sync)

    def decide(self, obs: Observation, st: KedaState) -> tuple[int, str, KedaState]:
        k = self.keda
        backlog = obs.visible + (obs.in_flight if k.scale_on_in_flight else 0)
        current, now = obs.current, obs.now
        desired, why = current, "keda: hold"
        if now >= st.next_poll - EPS:
            active = backlog > k.activation
            st = replace(
                st,
                next_poll=now + k.polling_s,
                last_active=now if active else st.last_active,
            )
            if current == 0 and active:
                desired, why = self.spec.min_replicas, f"keda: active ({backlog}) 0 -> {desired}"
            elif (
                not active
                and current > 0
                and k.min_replicas == 0
                and st.last_active is not None
                and st.last_active + k.cooldown_s < now
            ):
                return 0, "keda: cooldown over -> 0", replace(st, hpa=HpaState())
        if now >= st.next_sync - EPS:
            while st.next_sync <= now + EPS:
                st = replace(st, next_sync=st.next_sync + SYNC_S)
            if current > 0:
                raw = external_average_value(backlog, k.queue_length, current)
                desired, hpa = normalize(raw, current, now, st.hpa, self.spec)
                st = replace(st, hpa=hpa)
                why = f"hpa: raw {raw} -> {desired}"
        return desired, why, st


def _rules(raw: dict[str, Any] | None, default: ScalingRules) -> ScalingRules:
    if raw is None:
        return default
    policies = tuple(
        RatePolicy(p["type"], int(p["value"]), float(p["periodSeconds"]))
        for p in raw.get("policies") or ()
    )
    return ScalingRules(
        window_s=float(raw.get("stabilizationWindowSeconds", default.window_s)),
        policies=policies or default.policies,
        select=raw.get("selectPolicy", "Max"),
    )


def from_scaledobject(doc: dict[str, Any]) -> KedaConfig:
    """A KedaConfig from a ScaledObject manifest (its aws-sqs-queue trigger)."""
    spec = doc["spec"]
    trigger = next(t for t in spec["triggers"] if t["type"] == "aws-sqs-queue")
    meta = trigger.get("metadata", {})
    raw_behavior = (
        spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    )
    behavior = None
    if raw_behavior is not None:
        behavior = Behavior(
            scale_up=_rules(raw_behavior.get("scaleUp"), DEFAULT_SCALE_UP),
            scale_down=_rules(raw_behavior.get("scaleDown"), DEFAULT_SCALE_DOWN),
        )
    return KedaConfig(
        queue_length=float(meta.get("queueLength", 5)),
        activation=float(meta.get("activationQueueLength", 0)),
        min_replicas=int(spec.get("minReplicaCount", 0)),
        max_replicas=int(spec.get("maxReplicaCount", 100)),
        polling_s=float(spec.get("pollingInterval", 30)),
        cooldown_s=float(spec.get("cooldownPeriod", 300)),
        behavior=behavior,
        scale_on_in_flight=str(meta.get("scaleOnInFlight", "true")).lower() == "true",
    )


def shipped(path: Path = SHIPPED) -> KedaConfig:
    """The ScaledObject this repository ships (deploy/k8s/components/keda), read from the file."""
    import yaml

    return from_scaledobject(yaml.safe_load(path.read_text()))
