"""Which simulator policy a name means (`python -m scaler simulate --policy NAME`)."""

from __future__ import annotations

from scaler.baselines import DefaultPolicy, SageMakerPolicy, StepPolicy
from scaler.keda import KedaConfig, KedaPolicy, shipped
from scaler.policy import PolicyConfig
from scaler.references import OraclePolicy, ReactiveIdealPolicy
from scaler.simpolicy import SimPolicy
from scaler.simulator import SimConfig

POLICY_NAMES = (
    "default", "keda", "keda-shipped", "sagemaker", "step", "oracle", "reactive-ideal",
)


def make_policy(
    name: str,
    cfg: PolicyConfig,
    sim: SimConfig,
    arrivals: list[int],
    keda: KedaConfig | None = None,
    tick_s: float = 20.0,
) -> SimPolicy:
    """`cfg` bounds every policy ([min, max] replicas) and tunes `default`; `keda` tunes `keda`."""
    if name == "default":
        return DefaultPolicy(cfg, interval_s=tick_s)
    if name == "keda":
        return KedaPolicy(keda or KedaConfig(max_replicas=cfg.max_replicas), seed=sim.seed)
    if name == "keda-shipped":
        return KedaPolicy(shipped(), seed=sim.seed, name="keda-shipped")
    if name == "sagemaker":
        return SageMakerPolicy(cfg)
    if name == "step":
        return StepPolicy(cfg)
    if name == "oracle":
        lead = sim.startup_delay + sim.startup_jitter_s
        return OraclePolicy(cfg, arrivals, sim.service_rate, lead)
    if name == "reactive-ideal":
        return ReactiveIdealPolicy(cfg, arrivals, sim.service_rate)
    raise ValueError(f"unknown policy {name!r} ({', '.join(POLICY_NAMES)})")
