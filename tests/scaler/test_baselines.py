"""Baselines: the KEDA+HPA arithmetic on the worked examples of the HPA docs and source."""

from __future__ import annotations

from scaler.baselines import (
    KedaPolicy,
    KedaState,
    SageMakerPolicy,
    SageMakerState,
    StepPolicy,
    hpa_external_average_value,
    hpa_normalize,
    hpa_scale_up_limit,
)
from scaler.policy import Observation, PolicyConfig


def o(now: float, visible: int, current: int, in_flight: int = 0) -> Observation:
    return Observation(
        now=now, visible=visible, in_flight=in_flight, delayed=0, current=current, ready=current
    )


def test_hpa_external_average_value_tolerance_and_ceil() -> None:
    # 3 replicas, target 5: 16 → ratio 1.067 (inside 10 %) keeps 3; 17 → 1.13 → ceil(17/5) = 4
    assert hpa_external_average_value(16, 5, 3) == 3
    assert hpa_external_average_value(17, 5, 3) == 4
    # 13.6 → 0.907 keeps 3; 13 → 0.867 → ceil(13/5) = 3 ... and 12 → 0.8 → 3; 9 → 2
    assert hpa_external_average_value(13, 5, 3) == 3
    assert hpa_external_average_value(9, 5, 3) == 2
    # docs example: metric 100 over target 5 wants 20
    assert hpa_external_average_value(100, 5, 4) == 20


def test_hpa_scale_up_limit_without_behavior() -> None:
    assert hpa_scale_up_limit(1) == 4
    assert hpa_scale_up_limit(2) == 4
    assert hpa_scale_up_limit(3) == 6
    assert hpa_scale_up_limit(10) == 20


def test_hpa_normalize_stabilizes_down_and_limits_up() -> None:
    desired, recs = hpa_normalize(20, 2, 0.0, (), 1, 100)
    assert desired == 4  # limited to max(2×2, 4)
    desired, recs = hpa_normalize(2, 8, 100.0, ((0.0, 8),), 1, 100)
    assert desired == 8  # 8 recommended 100 s ago, within 300 s
    desired, _ = hpa_normalize(2, 8, 250.0, recs, 1, 100)
    assert desired == 8
    desired, _ = hpa_normalize(2, 8, 301.0, recs, 1, 100)
    assert desired == 2  # the 8 from t=0 left the 300 s window


def test_keda_activation_and_cooldown_to_zero() -> None:
    keda = KedaPolicy(PolicyConfig(max_replicas=50))
    desired, _, st = keda.decide(o(0, 0, 0), KedaState())
    assert desired == 0
    desired, _, st = keda.decide(o(30, 1, 0), st)
    assert desired == 1  # activation: backlog 1 > 0
    desired, _, st = keda.decide(o(45, 100, 1), st)
    assert desired == 4  # HPA: ceil(100/5) = 20 limited to max(2, 4)
    # the HPA keeps the max of the *raw* recommendations (20) for 300 s, so it keeps climbing
    # (limit 2×current) even with the queue empty: what horizontal.go does without behavior
    desired, _, st = keda.decide(o(60, 0, 4), st)
    assert desired == 8
    desired, _, st = keda.decide(o(75, 0, 8), st)
    assert desired == 16
    desired, _, st = keda.decide(o(90, 0, 16), st)
    assert desired == 20
    desired, _, st = keda.decide(o(300, 0, 20), st)
    assert desired == 20  # KEDA polled at 300: inactive 270 s since the last active poll (30 s)
    desired, _, st = keda.decide(o(330, 0, 20), st)
    assert desired == 0  # cooldownPeriod 300 s after the last active poll


def test_step_policy_is_the_seed_lambda() -> None:
    step = StepPolicy(PolicyConfig(max_replicas=4))
    assert step.decide(o(0, 101, 2), None)[0] == 3
    assert step.decide(o(0, 100, 2), None)[0] == 2
    assert step.decide(o(0, 0, 2), None)[0] == 1
    assert step.decide(o(0, 0, 1), None)[0] == 1  # never below one
    assert step.decide(o(0, 500, 4), None)[0] == 4


def test_sagemaker_needs_two_periods_from_zero_and_three_to_scale_out() -> None:
    sm = SageMakerPolicy(PolicyConfig(max_replicas=50))
    d, _, st = sm.decide(o(0, 10, 0), SageMakerState())
    assert d == 0
    d, _, st = sm.decide(o(60, 10, 0), st)
    assert d == 1
    for t in (120, 180):
        d, _, st = sm.decide(o(t, 100, 1), st)
        assert d == 1
    d, _, st = sm.decide(o(400, 100, 1), st)
    assert d == 20  # 3 breaching datapoints and the 300 s cooldown passed
