"""Chaos 6 — scaler faults: one scaler run over many targets while the Kubernetes API answers
403/404/409/429/500/503, another against an API that never answers (timeouts), SQS queues that do
not exist, and a corrupted state annotation. The real `kubernetes` client talks to the scaler
helper's local API stub (tests/scaler/kubeapi_stub.py, imported, not copied); SQS is fauxqs.

Checked: no scale PATCH carries a wrong number (every patch equals that target's decision and lies
in [min, max]), faulted targets are not patched and report an error naming the status, healthy
targets are still scaled, a corrupted annotation is reported and never trusted for a scale-down.
Plus hypothesis property tests: over random sequences of queue snapshots the policy stays in
[min, max] and never scales down below what the backlog needs.

Broken build that fails it: CHAOS_BREAK=scaler_no_clamp (the policy's [min, max] clamp removed).
"""

from __future__ import annotations

import math
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.conftest import ChaosEntry, pick
from chaos.support.harness import env_breaks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scaler"))
from kubeapi_stub import FakeDeployment, KubeApiStub

from scaler import policy
from scaler.cluster import KubeCluster
from scaler.config import Settings, TargetConfig
from scaler.policy import Observation, PolicyConfig, State, decide
from scaler.queue import SqsQueues
from scaler.runner import Deps, run_once
from scaler.state import ANNOTATION

NS = "gpu"


@pytest.fixture(autouse=True)
def broken_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """CHAOS_BREAK=scaler_no_clamp: a policy that forgets [min, max] (to show the test fails)."""
    if "scaler_no_clamp" in env_breaks():
        monkeypatch.setattr(policy, "clamp", lambda value, cfg: value)


@pytest.fixture
def kube() -> Iterator[KubeApiStub]:
    stub = KubeApiStub()
    yield stub
    stub.stop()


def _queue(sqs: Any, n: int) -> str:
    url = sqs.create_queue(QueueName=f"chaos-scaler-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(start, min(n, start + 10))],
        )
    return url


class SilentServer:
    """Accepts connections and never answers: an API server that times out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.chaos_smoke
def test_scaler_faults(
    chaos_report: ChaosEntry, kube: KubeApiStub, fauxqs_server: Any, tmp_path: Path
) -> None:
    sqs = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)
    backlog = 40
    url = _queue(sqs, backlog)
    faults = {  # target -> statuses the API answers to its GET deployment / PATCH scale
        "forbidden": ("GET", "deployment", [403]),
        "throttled": ("GET", "deployment", [429]),
        "apierror": ("GET", "deployment", [500]),
        "unavailable": ("PATCH", "scale", [503]),
        "conflict": ("PATCH", "scale", [409]),  # one 409: re-read, re-decide, retry once
        "conflict2": ("PATCH", "scale", [409, 409]),  # the retry conflicts again: give up
    }
    names = ["healthy", "healthy2", *faults, "missing", "nosqs", "corrupt"]
    for name in names:
        if name != "missing":
            kube.deployments[(NS, name)] = FakeDeployment(replicas=1, ready=1)
    kube.deployments[(NS, "corrupt")] = FakeDeployment(
        replicas=3, ready=3, annotations={ANNOTATION: "{not json"}
    )
    for name, (method, kind, codes) in faults.items():
        kube.faults[(method, kind, f"{NS}/{name}")] = list(codes)
    targets = [
        TargetConfig(
            queue_url=url if name != "nosqs" else url.rsplit("/", 1)[0] + "/no-such-queue",
            deployment=f"{NS}/{name}", min_replicas=0, max_replicas=4,
            target_backlog_per_replica=5, startup_delay_s=0,
        )
        for name in names
    ]
    cluster = KubeCluster.from_kubeconfig(kube.kubeconfig(tmp_path / "kc"), request_timeout_s=3)
    deps = Deps(queues=SqsQueues(sqs), cluster=cluster, clock=time.time)
    outcomes = {o.target.split("/")[-1]: o for o in run_once(
        Settings(targets=targets, drain_rate_source="prior"), deps, dry_run=False)}

    patches = {p.path.split("/")[-2]: p for p in kube.patches("scale")}
    applied = {name: kube.deployments[(NS, name)].replicas
               for name in names if (NS, name) in kube.deployments}

    # The same run against an API server that never answers: every target times out cleanly.
    silent = SilentServer()
    try:
        kc = tmp_path / "silent-kc"
        text = Path(kube.kubeconfig(tmp_path / "tmp-kc")).read_text()
        kc.write_text(text.replace(kube.url, silent.url))
        slow_deps = Deps(queues=SqsQueues(sqs),
                         cluster=KubeCluster.from_kubeconfig(str(kc), request_timeout_s=1),
                         clock=time.time)
        t0 = time.monotonic()
        timed = run_once(Settings(targets=targets[:1], drain_rate_source="prior"), slow_deps,
                         dry_run=False)
        timeout_run_s = time.monotonic() - t0
    finally:
        silent.stop()

    wrong_patches = [
        f"{name}: patched {p.body['spec']['replicas']} but decided {outcomes[name].desired}"
        for name, p in patches.items()
        if p.body["spec"]["replicas"] != outcomes[name].desired
        or not 0 <= p.body["spec"]["replicas"] <= 4
    ]
    chaos_report.load = f"{len(names)} targets, backlog {backlog}, one run + a timeout run"
    chaos_report.faults = {
        **{k: v[2] for k, v in faults.items()}, "missing_deployment": 404,
        "missing_queue": 1, "corrupt_annotation": 1, "api_timeouts": len(timed),
        **({"broken_build": list(env_breaks())} if env_breaks() else {}),
    }
    chaos_report.lost, chaos_report.duplicates, chaos_report.crashes = 0, 0, 0
    chaos_report.figures = {
        "wrong_patches": len(wrong_patches),
        "outcomes": {n: (o.desired, o.patched, (o.error or "")[:60]) for n, o in outcomes.items()},
        "timeout_run_s": round(timeout_run_s, 1),
    }

    assert not wrong_patches, wrong_patches
    want = min(4, math.ceil(backlog / 5))
    for name in ("healthy", "healthy2", "conflict"):
        assert outcomes[name].error is None, outcomes[name].line()
        assert applied[name] == outcomes[name].desired == want, outcomes[name].line()
    for name, code in (("forbidden", 403), ("throttled", 429), ("apierror", 500),
                       ("unavailable", 503), ("missing", 404), ("conflict2", 409)):
        assert outcomes[name].error and str(code) in outcomes[name].error, outcomes[name].line()
        assert name not in patches or name in ("unavailable", "conflict2")
        if name in applied:
            assert applied[name] == 1, f"{name} was scaled despite the fault"
    assert outcomes["nosqs"].error and "nosqs" not in patches
    assert outcomes["corrupt"].warnings, "a corrupted annotation must be reported"
    assert applied["corrupt"] >= want  # never trusted to scale down
    assert all(o.error and not o.patched for o in timed)
    assert timeout_run_s < 10  # bounded by the 1 s request timeout (and its retries), not hung


# ------------------------------------------------------------------------------------------------
# Property tests over random sequences of snapshots (pure policy, no I/O)

snapshot = st.tuples(
    st.integers(0, 5000),  # visible
    st.integers(0, 500),  # in flight
    st.integers(0, 12),  # ready (clamped to current below)
    st.floats(1.0, 600.0),  # seconds since the previous run
    st.one_of(st.none(), st.floats(0.0, 200.0)),  # drained per second (None: no data)
)
configs = st.builds(
    lambda lo, span, per, stab, cool: PolicyConfig(
        min_replicas=lo, max_replicas=max(1, lo + span), target_backlog_per_replica=per,
        scale_down_stabilization_s=stab, cooldown_to_zero_s=cool, startup_delay_s=60,
    ),
    st.integers(0, 3), st.integers(0, 12), st.one_of(st.none(), st.floats(1.0, 100.0)),
    st.floats(0.0, 600.0), st.floats(0.0, 600.0),
)


@pytest.mark.chaos_smoke
@settings(max_examples=pick(150, 600, 3000), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, snaps=st.lists(snapshot, min_size=1, max_size=30), start=st.integers(0, 12))
def test_policy_properties(cfg: PolicyConfig, snaps: list[Any], start: int) -> None:
    state, now, current = State(), 1_800_000_000.0, start
    for visible, in_flight, ready, dt, drained in snaps:
        now += dt
        obs = Observation(now=now, visible=visible, in_flight=in_flight, delayed=0,
                          current=current, ready=min(ready, current), drained_per_s=drained)
        decision = decide(obs, state, cfg)
        backlog = visible + in_flight
        assert cfg.min_replicas <= decision.desired <= cfg.max_replicas, decision.reason
        if cfg.target_backlog_per_replica is not None and decision.desired < current:
            needed = math.ceil(backlog / cfg.target_backlog_per_replica * (1 - cfg.tolerance))
            assert decision.desired >= min(cfg.max_replicas, needed), (
                f"scaled down to {decision.desired} with backlog {backlog} "
                f"(needs {needed}): {decision.reason}"
            )
        if backlog > cfg.activation_backlog:
            assert decision.desired >= max(1, cfg.min_replicas), decision.reason
        state, current = decision.state, decision.desired
