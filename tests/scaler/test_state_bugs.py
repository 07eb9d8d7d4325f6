"""Issue 10's four policy bugs, each through the real path: fauxqs for SQS, the real `kubernetes`
client against the local API stub, the annotation the runner writes read back on the next run.
Each failed on the code before the fix (see the report in docs/scaler.md)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from kubeapi_stub import FakeDeployment, KubeApiStub

from scaler.cluster import KubeCluster
from scaler.config import Settings, TargetConfig
from scaler.policy import Observation, PolicyConfig, State, decide
from scaler.queue import SqsQueues
from scaler.runner import Deps, run_once
from scaler.state import ANNOTATION, decode, encode

NOW = 1_800_000_000.0


@pytest.fixture
def sqs(fauxqs_server: Any) -> Any:
    return boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def one_target(sqs: Any, kubeconfig: str, clock: Clock) -> tuple[Settings, Deps]:
    url = sqs.create_queue(QueueName=f"bugs-{int(clock.now * 1000) % 10**9}")["QueueUrl"]
    settings = Settings(
        targets=[TargetConfig(queue_url=url, deployment="ml/a", max_replicas=10)],
        drain_rate_source="prior",
    )
    deps = Deps(
        queues=SqsQueues(sqs),
        cluster=KubeCluster.from_kubeconfig(kubeconfig, request_timeout_s=5),
        clock=clock,
    )
    return settings, deps


def idle(now: float, current: int) -> Observation:
    return Observation(now=now, visible=0, in_flight=0, delayed=0, current=current, ready=current)


def test_bug1_fresh_state_scales_to_zero_once_idle_long_enough(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    # the policy alone: fresh state, idle queue, one replica, the clock stepped 2 h
    first = decide(idle(NOW, 1), State(), PolicyConfig())
    assert first.desired == 1  # no history: held this run
    assert decide(idle(NOW + 7200, 1), first.state, PolicyConfig()).desired == 0
    # and through the runner: a Deployment created at 1 replica, no annotation
    clock = Clock()
    settings, deps = one_target(sqs, kubeconfig, clock)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)
    [out] = run_once(settings, deps)
    assert out.desired == 1 and out.error is None
    clock.now += 7200
    [out] = run_once(settings, deps)
    assert out.desired == 0 and kube.deployments[("ml", "a")].replicas == 0, out.line()


def test_bug2_missing_annotation_is_held_like_a_corrupt_one(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    # migrating from KEDA, or `kubectl replace` stripped the annotation: 8 running, queue empty
    clock = Clock()
    settings, deps = one_target(sqs, kubeconfig, clock)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=8, ready=8)
    [out] = run_once(settings, deps)
    assert out.desired == 8 and "held" in out.reason, out.line()
    assert kube.patches("scale") == []


def test_bug3_the_hold_after_a_reset_lasts_the_stabilization_window(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    clock = Clock()
    settings, deps = one_target(sqs, kubeconfig, clock)
    kube.deployments[("ml", "a")] = FakeDeployment(
        replicas=8, ready=8, annotations={ANNOTATION: "{garbage"}
    )
    [out] = run_once(settings, deps)
    assert out.desired == 8 and out.warnings
    window = PolicyConfig().scale_down_stabilization_s
    written = json.loads(kube.deployments[("ml", "a")].annotations[ANNOTATION])
    assert [NOW, 8] in written["recs"]  # the held value is in the stabilization history
    for step in range(20, int(window), 20):  # the Lambda's next runs, 20 s apart
        clock.now = NOW + step
        [out] = run_once(settings, deps)
        assert out.desired == 8, (step, out.line())
    clock.now = NOW + window + 20
    [out] = run_once(settings, deps)
    assert out.desired < 8, out.line()  # then the window has passed and it scales down


def test_bug4_huge_integers_in_the_annotation_reset_with_a_warning(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    huge = "1" + "0" * 400  # > 1e308: float() of it raises OverflowError
    for field, text in (
        ("recs", '{"v": 1, "recs": [[1.0, ' + huge + "]]}"),
        ("last_active", '{"v": 1, "last_active": ' + huge + "}"),
    ):
        state, problem = decode(text, NOW)
        assert state == State() and problem and field in problem and "range" in problem
    clock = Clock()
    settings, deps = one_target(sqs, kubeconfig, clock)
    kube.deployments[("ml", "a")] = FakeDeployment(
        replicas=3, ready=3, annotations={ANNOTATION: text}
    )
    [out] = run_once(settings, deps)
    assert out.desired == 3 and any("last_active" in w for w in out.warnings), out.line()
    fresh = json.loads(kube.deployments[("ml", "a")].annotations[ANNOTATION])
    assert fresh["v"] == 1 and fresh["last_active"] is None
    clock.now += 20
    [out] = run_once(settings, deps)  # the target is no longer stuck: the next run is healthy
    assert out.error is None and out.desired == 3


@pytest.mark.parametrize("visible", [1_200_000_000, 10**17])
def test_a_backlog_over_a_billion_round_trips_through_the_annotation(visible: int) -> None:
    """Counts were capped at 10**9 when read, not when written: a backlog of 1.2 billion made
    the next run refuse the scaler's own annotation (target FAILED, history reset) on every run
    while the backlog lasted."""
    obs = Observation(now=NOW, visible=visible, in_flight=0, delayed=0, current=4, ready=4)
    state = decide(obs, State(), PolicyConfig(max_replicas=20)).state
    later = Observation(now=NOW + 20, visible=visible, in_flight=0, delayed=0, current=20,
                        ready=4)
    state = decide(later, state, PolicyConfig(max_replicas=20)).state
    read, problem = decode(encode(state), NOW + 40)
    assert problem is None
    assert read.prev_visible == min(visible, 2**53)
