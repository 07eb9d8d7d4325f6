"""Baselines: the HPA's worked examples, KEDA's edges, the shipped ScaledObject, SageMaker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from scaler.baselines import SageMakerPolicy, SageMakerState, StepPolicy
from scaler.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    HpaSpec,
    HpaState,
    RatePolicy,
    ScalingRules,
    external_average_value,
    normalize,
    parse_policies,
    scale_up_limit,
)
from scaler.keda import SHIPPED, KedaConfig, KedaPolicy, shipped
from scaler.policy import Observation, PolicyConfig

ROOT = Path(__file__).resolve().parents[2]


def o(now: float, visible: int, current: int, in_flight: int = 0) -> Observation:
    return Observation(
        now=now, visible=visible, in_flight=in_flight, delayed=0, current=current, ready=current
    )


# ---------------------------------------------------------------- the HPA's arithmetic


def test_hpa_algorithm_details_examples() -> None:
    # kubernetes.io "Algorithm details": desired = ceil(current × metric / target); 200m over a
    # 100m target doubles, 50m halves; a ratio within the 0.1 tolerance keeps the count
    assert external_average_value(usage=2 * 100 * 4, target=100, current=4) == 8
    assert external_average_value(usage=0.5 * 100 * 4, target=100, current=4) == 2
    assert external_average_value(usage=1.05 * 100 * 4, target=100, current=4) == 4
    assert external_average_value(usage=1.11 * 100 * 4, target=100, current=4) == 5


def test_hpa_without_behavior_limits_scale_up_to_double_or_four() -> None:
    assert [scale_up_limit(n) for n in (1, 2, 3, 10)] == [4, 4, 6, 20]
    desired, _ = normalize(20, 2, 0.0, HpaState(), HpaSpec(1, 100))
    assert desired == 4


def test_hpa_stabilization_keeps_a_sample_exactly_300s_old() -> None:
    spec = HpaSpec(1, 100)
    _, st = normalize(8, 8, 0.0, HpaState(), spec)
    assert normalize(2, 8, 300.0, st, spec)[0] == 8  # Before(cutoff) drops only older samples
    assert normalize(2, 8, 300.5, st, spec)[0] == 2


def test_hpa_behavior_scale_down_example_from_the_docs() -> None:
    # kubernetes.io "Scaling policies": Pods 4 / 60 s and Percent 10 / 60 s, the policy allowing
    # the most change wins: 80 -> 72 (10 % = 8 > 4); a minute later 72 -> 64 (7.2 rounds to 8);
    # below 40 replicas the Pods policy removes 4 at a time
    down = ScalingRules(0.0, (RatePolicy("Pods", 4, 60), RatePolicy("Percent", 10, 60)))
    spec = HpaSpec(1, 100, behavior=Behavior(DEFAULT_SCALE_UP, down))
    st, current, seen = HpaState(), 80, []
    for minute in range(8):
        current, st = normalize(10, current, 60.0 * minute, st, spec)
        seen.append(current)
    # int(72 × 0.9) = 64; at 40 both allow 4; below it Pods' 4 is the larger change
    assert seen == [72, 64, 57, 51, 45, 40, 36, 32]
    # within the period nothing more goes
    assert normalize(10, 72, 30.0, normalize(10, 80, 0.0, HpaState(), spec)[1], spec)[0] == 72


def test_hpa_behavior_default_scale_up_doubles_or_adds_four_per_15s() -> None:
    spec = HpaSpec(1, 100, behavior=Behavior())
    st, current = HpaState(), 1
    counts = []
    for sync in range(4):
        current, st = normalize(100, current, 15.0 * sync, st, spec)
        counts.append(current)
    assert counts == [5, 10, 20, 40]  # max(+4, +100 %) each 15 s period


def test_hpa_behavior_stabilization_windows_are_strict() -> None:
    down = replace(DEFAULT_SCALE_DOWN, window_s=60.0)
    spec = HpaSpec(1, 100, behavior=Behavior(DEFAULT_SCALE_UP, down))
    _, st = normalize(8, 8, 0.0, HpaState(), spec)
    assert normalize(2, 8, 59.0, st, spec)[0] == 8
    assert normalize(2, 8, 60.0, st, spec)[0] == 2  # After(cutoff): exactly 60 s old is out


def test_parse_policies_and_selects() -> None:
    assert parse_policies("Pods:4:60,Percent:100:15") == (
        RatePolicy("Pods", 4, 60), RatePolicy("Percent", 100, 15))
    with pytest.raises(ValueError, match="Pods:N:SECONDS"):
        parse_policies("Pods:4")
    disabled = HpaSpec(1, 100, behavior=Behavior(replace(DEFAULT_SCALE_UP, select="Disabled")))
    assert normalize(50, 3, 0.0, HpaState(), disabled)[0] == 3


# ---------------------------------------------------------------- KEDA's edges


def test_keda_first_hpa_sync_after_activation_lands_at_a_seeded_phase() -> None:
    phases = {KedaPolicy(seed=s).phase for s in range(40)}
    assert len(phases) > 5 and all(0 <= p < 15 for p in phases)
    seed = next(s for s in range(40) if KedaPolicy(seed=s).phase > 0)
    keda = KedaPolicy(KedaConfig(max_replicas=50), seed=seed)
    st = keda.initial_state()
    desired, _, st = keda.decide(o(0, 100, 0), st)
    assert desired == 1  # KEDA's poll: 0 -> 1
    t = keda.next_decision(0, st)
    assert t == keda.phase  # the HPA's first sync, before KEDA's next poll
    desired, why, st = keda.decide(o(t, 100, 1), st)
    assert desired == 4 and "hpa" in why  # ceil(100/5) = 20 limited to max(2, 4)


def test_keda_scales_to_zero_strictly_after_the_cooldown_at_the_next_poll() -> None:
    keda = KedaPolicy(KedaConfig(cooldown_s=300, polling_s=30))
    st = replace(keda.initial_state(), next_sync=1e9)  # HPA out of the way
    _, _, st = keda.decide(o(0, 10, 0), st)
    for t in range(30, 301, 30):
        desired, _, st = keda.decide(o(t, 0, 1), st)
        assert desired == 1, t  # at 300 s the cooldown has not passed *strictly* yet
    desired, _, st = keda.decide(o(330, 0, 1), st)
    assert desired == 0  # the first poll after it


def test_keda_min_replicas_never_go_to_zero_and_bound_the_hpa() -> None:
    keda = KedaPolicy(KedaConfig(min_replicas=2, cooldown_s=0))
    st = keda.initial_state()
    for t in range(0, 600, 15):
        desired, _, st = keda.decide(o(t, 0, 2), st)
        assert desired == 2


def test_keda_shipped_reads_the_manifest() -> None:
    doc = yaml.safe_load(SHIPPED.read_text())
    cfg = shipped()
    meta = doc["spec"]["triggers"][0]["metadata"]
    assert cfg.queue_length == float(meta["queueLength"])
    assert cfg.max_replicas == doc["spec"]["maxReplicaCount"]
    assert cfg.polling_s == doc["spec"]["pollingInterval"]
    assert cfg.cooldown_s == doc["spec"]["cooldownPeriod"]
    assert cfg.behavior is not None
    down = doc["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert cfg.behavior.scale_down.window_s == down["stabilizationWindowSeconds"]
    assert cfg.behavior.scale_down.policies[0].value == down["policies"][0]["value"]


# ---------------------------------------------------------------- the others


def test_step_policy_is_the_seed_lambda() -> None:
    step = StepPolicy(PolicyConfig(max_replicas=4))
    assert step.decide(o(0, 101, 2), None)[0] == 3
    assert step.decide(o(0, 100, 2), None)[0] == 2
    assert step.decide(o(0, 0, 2), None)[0] == 1
    assert step.decide(o(0, 0, 1), None)[0] == 1  # never below one
    assert step.decide(o(0, 500, 4), None)[0] == 4


def sm_obs(now: float, current: int, minutes: tuple[float, ...]) -> Observation:
    return replace(o(now, 0, current), backlog_minutes=minutes)


def test_sagemaker_wakes_on_two_datapoints_of_backlog_without_capacity() -> None:
    sm = SageMakerPolicy(PolicyConfig(max_replicas=50))
    assert sm.decide(sm_obs(0, 0, (0.0, 10.0)), SageMakerState())[0] == 0
    assert sm.decide(sm_obs(60, 0, (10.0, 10.0)), SageMakerState())[0] == 1


def test_sagemaker_target_tracking_and_a_larger_scale_out_inside_the_cooldown() -> None:
    sm = SageMakerPolicy(PolicyConfig(max_replicas=50))
    d, _, st = sm.decide(sm_obs(0, 1, (30.0, 30.0, 30.0)), SageMakerState())
    assert d == 6  # 3 datapoints above 5 per instance: ceil(30 / 5)
    # inside the 300 s scale-out cooldown: the same target does nothing, a larger one scales
    assert sm.decide(sm_obs(60, 6, (40.0, 40.0, 30.0)), st)[0] == 6
    assert sm.decide(sm_obs(60, 6, (40.0, 40.0, 60.0)), st)[0] == 12
    # scale-in needs 15 datapoints below 90 % of the target, and no cooldown in force
    low = tuple([1.0] * 15)
    assert sm.decide(sm_obs(200, 6, low), st)[0] == 6  # scale-out cooldown still on
    assert sm.decide(sm_obs(400, 6, low), st)[0] == 1
