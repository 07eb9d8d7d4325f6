"""One run over several targets, end to end: a real local SQS server (fauxqs), the real
`kubernetes` client against the local API stub, and for the GKE path the real google-auth /
google-cloud-container code against local Google stand-ins and a TLS API stub.

No kube-apiserver binary can be had here, hence the stub (tests/scaler/kubeapi_stub.py)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from google_stub import GoogleStub
from kubeapi_stub import FakeDeployment, KubeApiStub, self_signed_cert

from scaler.cluster import KubeCluster
from scaler.config import Settings, TargetConfig, load_settings
from scaler.policy_types import State
from scaler.queue import SqsQueues
from scaler.runner import Deps, RunFailed, build_deps, raise_if_failed, run_once
from scaler.state import ANNOTATION, decode, encode

CLUSTER = "projects/proj/locations/europe-west4/clusters/gpu"
NOW = 1_800_000_000.0


@pytest.fixture
def sqs(fauxqs_server: Any) -> Any:
    return boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)


def queue_with(sqs: Any, n: int) -> str:
    url = sqs.create_queue(QueueName=f"scaler-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(start, min(n, start + 10))],
        )
    return url


def settings_for(*targets: dict[str, Any]) -> Settings:
    # these cases size bursts to drain within a minute (the arithmetic in their comments)
    return Settings(targets=[TargetConfig(**{"target_wait_s": 60, **t}) for t in targets],
                    drain_rate_source="prior")


def deps_for(sqs: Any, kubeconfig: str) -> Deps:
    return Deps(
        queues=SqsQueues(sqs),
        cluster=KubeCluster.from_kubeconfig(kubeconfig, request_timeout_s=5),
        clock=lambda: NOW,
    )


def test_serves_every_target_even_when_one_fails(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    busy = queue_with(sqs, 120)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    kube.deployments[("ml", "c")] = FakeDeployment(replicas=1, ready=1)
    missing = busy.rsplit("/", 1)[0] + "/does-not-exist"
    settings = settings_for(
        {"queue_url": missing, "deployment": "ml/b"},
        {"queue_url": busy, "deployment": "ml/a", "drain_rate_prior": 1.0, "max_replicas": 10,
         "target_wait_s": 60},
        {"queue_url": busy, "deployment": "ml/c", "max_replicas": 10},
    )
    outcomes = run_once(settings, deps_for(sqs, kubeconfig))
    failed, a, c = outcomes
    assert failed.error and "does not exist" in failed.error and "does-not-exist" in failed.error
    # 120 waiting, 1 msg/s/replica, drain within 60 s: 2 replicas, patched at once from zero
    assert (a.visible, a.current, a.desired, a.patched) == (120, 0, 2, True)
    assert kube.deployments[("ml", "a")].replicas == 2
    assert c.error is None
    assert json.loads(kube.deployments[("ml", "a")].annotations[ANNOTATION])["v"] == 1
    with pytest.raises(RunFailed, match="1 of 3 target"):
        raise_if_failed(outcomes)


def test_conflict_rereads_and_retries_once(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    url = queue_with(sqs, 300)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)

    def someone_else_scales(dep: FakeDeployment) -> None:
        dep.replicas, dep.resource_version = 2, dep.resource_version + 1

    kube.before_scale_patch = someone_else_scales
    settings = settings_for({"queue_url": url, "deployment": "ml/a", "max_replicas": 20})
    [out] = run_once(settings, deps_for(sqs, kubeconfig))
    assert out.error is None and out.patched and "after 409" in out.reason
    first, second = kube.patches("scale")
    assert first.body["metadata"]["resourceVersion"] == "100"
    assert second.body["metadata"]["resourceVersion"] == "101"
    assert kube.deployments[("ml", "a")].replicas == out.desired == second.body["spec"]["replicas"]


def test_after_a_conflict_the_decision_is_made_again_from_the_state_read_again(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    """Our read: 3 replicas, idle for long, so scale to 0. Meanwhile another run (a CLI `once`)
    saw a burst, scaled to 5 and recorded why. Deciding again from our first read undid its
    scale-up (5 -> 0) and erased its recommendation; from its state, 5 holds."""
    url = queue_with(sqs, 0)
    idle = State(history_since=NOW - 10_000, last_active=NOW - 5_000, prev_time=NOW - 20,
                 prev_backlog=0, prev_visible=0, prev_ready=3, ready_since=NOW - 5_000)
    theirs = replace(idle, last_active=NOW - 1, prev_time=NOW - 1,
                     recommendations=((NOW - 1, 5),), last_scale_up=NOW - 1)
    kube.deployments[("ml", "a")] = FakeDeployment(
        replicas=3, ready=3, annotations={ANNOTATION: encode(idle)}
    )

    def another_run_scales_up(dep: FakeDeployment) -> None:
        dep.replicas, dep.resource_version = 5, dep.resource_version + 1
        dep.annotations[ANNOTATION] = encode(theirs)

    kube.before_scale_patch = another_run_scales_up
    settings = settings_for({"queue_url": url, "deployment": "ml/a", "cooldown_to_zero_s": 0,
                             "scale_down_stabilization_s": 300})
    [out] = run_once(settings, deps_for(sqs, kubeconfig))
    assert out.error is None
    assert [p.body["spec"]["replicas"] for p in kube.patches("scale")] == [0]  # the 409'd one
    assert kube.deployments[("ml", "a")].replicas == out.desired == 5
    written, _ = decode(kube.deployments[("ml", "a")].annotations[ANNOTATION], NOW)
    assert (NOW - 1, 5) in written.recommendations


def test_conflict_twice_is_an_error_without_a_third_patch(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    url = queue_with(sqs, 300)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)
    kube.faults[("PATCH", "scale", "ml/a")] = [409, 409]
    [out] = run_once(settings_for({"queue_url": url, "deployment": "ml/a"}),
                     deps_for(sqs, kubeconfig))
    assert out.error and "HTTP 409" in out.error
    assert len(kube.patches("scale")) == 2 and kube.patches("deployment") == []
    assert kube.deployments[("ml", "a")].replicas == 1


@pytest.mark.parametrize("status", [403, 404, 500])
def test_api_refusal_names_it_and_writes_nothing_else(
    sqs: Any, kube: KubeApiStub, kubeconfig: str, status: int
) -> None:
    url = queue_with(sqs, 300)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)
    kube.faults[("PATCH", "scale", "ml/a")] = [status]
    [out] = run_once(settings_for({"queue_url": url, "deployment": "ml/a"}),
                     deps_for(sqs, kubeconfig))
    assert out.error and f"HTTP {status}" in out.error and "ml/a" in out.error
    assert kube.patches("deployment") == []
    assert kube.deployments[("ml", "a")].replicas == 1


def test_malformed_annotation_reported_reset_and_never_scaled_down(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    url = queue_with(sqs, 0)
    kube.deployments[("ml", "a")] = FakeDeployment(
        replicas=4, ready=4, annotations={ANNOTATION: "{garbage"}
    )
    [out] = run_once(settings_for({"queue_url": url, "deployment": "ml/a"}),
                     deps_for(sqs, kubeconfig))
    assert out.error and ANNOTATION in out.error and "malformed" in out.error
    assert out.desired == 4 and kube.patches("scale") == []
    fresh = json.loads(kube.deployments[("ml", "a")].annotations[ANNOTATION])
    assert fresh["v"] == 1  # reset state written back, so the next run is healthy


def test_dry_run_writes_nothing(sqs: Any, kube: KubeApiStub, kubeconfig: str) -> None:
    url = queue_with(sqs, 50)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    [out] = run_once(settings_for({"queue_url": url, "deployment": "ml/a"}),
                     deps_for(sqs, kubeconfig), dry_run=True)
    assert out.desired == 1 and not out.patched and "[dry-run]" in out.line()
    assert all(r.method == "GET" for r in kube.requests)


def test_never_outside_bounds_even_when_running_above_max(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    url = queue_with(sqs, 30)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=12, ready=12)
    [out] = run_once(
        settings_for({"queue_url": url, "deployment": "ml/a", "min_replicas": 2,
                      "max_replicas": 5}),
        deps_for(sqs, kubeconfig),
    )
    assert out.desired is not None and 2 <= out.desired <= 5
    assert kube.deployments[("ml", "a")].replicas == out.desired


# ---------------------------------------------------------------- the GKE path, end to end


@pytest.fixture
def google() -> Iterator[GoogleStub]:
    stub = GoogleStub()
    yield stub
    stub.stop()


@pytest.fixture
def tls_kube(tmp_path: Path) -> Iterator[tuple[KubeApiStub, bytes]]:
    cert, key, pem = self_signed_cert(tmp_path)
    stub = KubeApiStub(tls=(cert, key))
    yield stub, pem
    stub.stop()


def gke_env(monkeypatch: pytest.MonkeyPatch, google: GoogleStub, url: str, sqs_endpoint: str
            ) -> None:
    monkeypatch.setenv("SCALER_TARGETS", json.dumps([{"queue_url": url, "deployment": "ml/a"}]))
    monkeypatch.setenv("SCALER_GKE_CLUSTER", CLUSTER)
    monkeypatch.setenv("SCALER_WIF_CONFIG", json.dumps(google.wif_config()))
    monkeypatch.setenv("SCALER_CONTAINER_API_ENDPOINT", google.url)
    monkeypatch.setenv("SCALER_DRAIN_RATE_SOURCE", "prior")
    monkeypatch.setenv("AWS_ENDPOINT_URL", sqs_endpoint)


def test_gke_wif_end_to_end(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, fauxqs_server: Any, google: GoogleStub,
    tls_kube: tuple[KubeApiStub, bytes],
) -> None:
    kube, ca_pem = tls_kube
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    google.cluster = {
        "selfName": CLUSTER, "name": "gpu", "status": "RUNNING", "endpoint": kube.address,
        "masterAuth": {"clusterCaCertificate": base64.b64encode(ca_pem).decode()},
    }
    gke_env(monkeypatch, google, queue_with(sqs, 60), fauxqs_server.endpoint_url)
    settings = load_settings()
    [out] = run_once(settings, build_deps(settings))
    assert out.error is None, out.error
    assert out.patched and kube.deployments[("ml", "a")].replicas == out.desired == 1
    # the bearer token is the impersonated service account's, over TLS verified by the GKE CA
    assert {r.authorization for r in kube.requests} == {"Bearer sa-token"}


@pytest.mark.parametrize("fault", ["gke-down", "sts-refuses"])
def test_gke_or_token_failure_fails_every_target_by_name(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, fauxqs_server: Any, google: GoogleStub,
    fault: str,
) -> None:
    if fault == "gke-down":
        google.container_fail = 503
    else:
        google.sts_fail = 403
    gke_env(monkeypatch, google, queue_with(sqs, 5), fauxqs_server.endpoint_url)
    settings = load_settings()
    outcomes = run_once(settings, build_deps(settings))
    needle = "get_cluster" if fault == "gke-down" else "token exchange failed"
    assert all(o.error and needle in o.error for o in outcomes)
    with pytest.raises(RunFailed, match=needle):
        raise_if_failed(outcomes)


def warm_gke(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, fauxqs_server: Any, google: GoogleStub,
    tls_kube: tuple[KubeApiStub, bytes],
) -> tuple[KubeApiStub, Settings]:
    """One Deployment on the TLS API stub behind the GKE stand-ins, the access cache empty."""
    from scaler import runner

    kube, ca_pem = tls_kube
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)
    google.cluster = {
        "selfName": CLUSTER, "name": "gpu", "status": "RUNNING", "endpoint": kube.address,
        "masterAuth": {"clusterCaCertificate": base64.b64encode(ca_pem).decode()},
    }
    gke_env(monkeypatch, google, queue_with(sqs, 1), fauxqs_server.endpoint_url)
    monkeypatch.setattr(runner, "_GKE_CACHE", {})
    return kube, load_settings()


def test_warm_container_reuses_gke_access_until_near_expiry(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, fauxqs_server: Any, google: GoogleStub,
    tls_kube: tuple[KubeApiStub, bytes],
) -> None:
    from scaler import runner

    _, settings = warm_gke(monkeypatch, sqs, fauxqs_server, google, tls_kube)
    for _ in range(2):
        [out] = run_once(settings, build_deps(settings))
        assert out.error is None
    exchanges = [r for r in google.requests if r[1] == "/sts/v1/token"]
    lookups = [r for r in google.requests if r[0] == "GET"]
    assert len(exchanges) == 1 and len(lookups) == 1
    # a token that expires within the margin is not reused
    [(key, (cluster, _))] = runner._GKE_CACHE.items()
    runner._GKE_CACHE[key] = (cluster, time.time() + 60)
    run_once(settings, build_deps(settings))
    assert len([r for r in google.requests if r[1] == "/sts/v1/token"]) == 2


def test_a_refused_gke_token_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, fauxqs_server: Any, google: GoogleStub,
    tls_kube: tuple[KubeApiStub, bytes],
) -> None:
    """A 401 (the token revoked, the key rotated): the warm container kept the refused token
    until 5 minutes before its expiry, and every run failed meanwhile."""
    kube, settings = warm_gke(monkeypatch, sqs, fauxqs_server, google, tls_kube)
    kube.faults[("GET", "deployment", "ml/a")] = [401]
    [out] = run_once(settings, build_deps(settings))
    assert out.error and "HTTP 401" in out.error
    [out] = run_once(settings, build_deps(settings))
    assert out.error is None, out.error
    assert len([r for r in google.requests if r[1] == "/sts/v1/token"]) == 2


def test_cached_gke_access_is_dropped_when_its_endpoint_stops_answering(
    monkeypatch: pytest.MonkeyPatch, sqs: Any, fauxqs_server: Any, google: GoogleStub,
    tls_kube: tuple[KubeApiStub, bytes], tmp_path: Path,
) -> None:
    """The control plane's IP rotated (or the cluster was rebuilt under its name): a warm
    container kept the cached endpoint until near the token's expiry, up to an hour of every
    run failing "unreachable". An unreachable API now drops the cache: the next run asks GKE."""
    old, settings = warm_gke(monkeypatch, sqs, fauxqs_server, google, tls_kube)
    [out] = run_once(settings, build_deps(settings))
    assert out.error is None, out.error
    (tmp_path / "new").mkdir()
    cert, key, pem = self_signed_cert(tmp_path / "new")  # a rebuilt cluster: a new CA too
    new = KubeApiStub(tls=(cert, key))
    try:
        new.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)
        google.cluster["endpoint"] = new.address
        google.cluster["masterAuth"]["clusterCaCertificate"] = base64.b64encode(pem).decode()
        old.stop()
        [out] = run_once(settings, build_deps(settings))
        assert out.error and "unreachable" in out.error  # this run had only the old address
        [out] = run_once(settings, build_deps(settings))
        assert out.error is None, out.error
        assert len([r for r in google.requests if r[0] == "GET"]) == 2
    finally:
        new.stop()


class PerQueueRates:
    """A drain source that answers per queue, as CloudWatch's per-queue metric does."""

    per_queue = True

    def __init__(self, rates: dict[str, float | None]) -> None:
        self.rates = rates
        self.asked: list[str] = []

    def rate(self, queue_url: str, namespace: str, deployment: str) -> float | None:
        self.asked.append(queue_url)
        return self.rates[queue_url]


def test_a_target_reading_several_queues_sizes_for_their_summed_backlog_and_drain(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    """A Deployment whose workers read WORKER_QUEUE_URLS: the backlog is every queue's, the drain
    rate every queue's deletes; a Prometheus-like whole-Deployment rate is asked once."""
    high, low, alone = queue_with(sqs, 60), queue_with(sqs, 60), queue_with(sqs, 120)
    kube.deployments[("ml", "multi")] = FakeDeployment(replicas=0, ready=0)
    kube.deployments[("ml", "single")] = FakeDeployment(replicas=0, ready=0)
    knobs = {"drain_rate_prior": 1.0, "max_replicas": 10}
    settings = settings_for(
        {"queue_urls": [high, low], "deployment": "ml/multi", **knobs},
        {"queue_url": alone, "deployment": "ml/single", **knobs},
    )
    rates = PerQueueRates({high: 0.5, low: None, alone: 0.5})
    deps = deps_for(sqs, kubeconfig)
    deps.drain = rates
    multi, single = run_once(settings, deps)
    assert multi.error is None and single.error is None, (multi.error, single.error)
    # 60 + 60 waiting, 0.5 + nothing drained: decided exactly as one queue of 120 draining 0.5
    assert (multi.visible, multi.desired) == (120, single.desired)
    assert single.desired > 1  # (one of the two queues alone would not need as many)
    assert rates.asked == [high, low, alone]
    assert multi.queue_url == f"{high},{low}"
    whole = PerQueueRates({high: 3.0, low: 3.0, alone: 3.0})
    whole.per_queue = False
    deps.drain = whole
    run_once(settings, deps)
    assert whole.asked == [high, alone]  # the Deployment's rate, once, not once per queue


def test_queue_url_or_queue_urls_but_not_both() -> None:
    with pytest.raises(Exception, match="exactly one of queue_url and queue_urls"):
        TargetConfig(queue_url="https://q/1/a", queue_urls=["https://q/1/b"], deployment="a/b")
    with pytest.raises(Exception, match="exactly one of queue_url and queue_urls"):
        TargetConfig(deployment="a/b")
    target = TargetConfig(queue_urls=["https://q/1/a", "https://q/1/b"], deployment="a/b")
    assert target.queue_url == "https://q/1/a"
    assert target.queues == ["https://q/1/a", "https://q/1/b"]


class SilentApi:
    """A TCP server that accepts connections and never answers (a stalled API server),
    counting the connections made to it."""

    def __init__(self) -> None:
        import socket
        import threading

        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.accepted: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self._server.accept()[0])
            except OSError:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.accepted:
            conn.close()
        self._server.close()


def test_a_stalled_api_fails_the_other_targets_of_the_run_at_once(
    sqs: Any, tmp_path: Path
) -> None:
    """Every target waited out the same dead API (the request timeout, twice with urllib3's
    retry): three targets at the default 10 s took 60 s, past the Lambda's 55 s, which then
    killed the invocation naming nothing. The first failure now fails the rest of the run."""
    api = SilentApi()
    try:
        stub = KubeApiStub.__new__(KubeApiStub)
        stub.url = api.url  # only its kubeconfig writer is used
        config = stub.kubeconfig(tmp_path / "kubeconfig")
        settings = settings_for(*({"queue_url": queue_with(sqs, 1), "deployment": f"ml/w{i}"}
                                  for i in range(3)))
        deps = Deps(queues=SqsQueues(sqs), clock=lambda: NOW,
                    cluster=KubeCluster.from_kubeconfig(config, request_timeout_s=0.5))
        outcomes = run_once(settings, deps)
        assert all(o.error for o in outcomes)
        assert "unreachable" in (outcomes[0].error or "")
        assert all("skipped: the cluster failed an earlier target" in (o.error or "")
                   for o in outcomes[1:])
        assert len(api.accepted) <= 2  # the first target's call and its one retry
    finally:
        api.stop()


def test_a_target_that_might_outlast_the_deadline_is_skipped_not_started(
    sqs: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=1, ready=1)
    settings = Settings(targets=[TargetConfig(queue_url=queue_with(sqs, 1), deployment="ml/a")],
                        drain_rate_source="prior", request_timeout_s=5.0)
    [out] = run_once(settings, deps_for(sqs, kubeconfig), deadline=time.monotonic() + 12.0)
    assert out.error and out.error.startswith("skipped: too little of the invocation left")
    assert kube.requests == []
    [out] = run_once(settings, deps_for(sqs, kubeconfig), deadline=time.monotonic() + 20.0)
    assert out.error is None, out.error
