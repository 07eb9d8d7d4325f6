"""The Kubernetes adapter with the REAL `kubernetes` client against a local API stub.

No kube-apiserver binary can be had here (no network but package registries, no container
runtime), so `kubeapi_stub.KubeApiStub` serves the apps/v1 Deployment and scale endpoints on
loopback; the tests assert the exact PATCH path, Content-Type and body the client sends.
"""

from __future__ import annotations

import pytest
from kubeapi_stub import FakeDeployment, KubeApiStub

from scaler.cluster import ClusterError, KubeCluster
from scaler.state import ANNOTATION


def make(kube: KubeApiStub, kubeconfig: str) -> KubeCluster:
    kube.deployments[("ml", "worker")] = FakeDeployment(
        replicas=3, ready=2, annotations={ANNOTATION: '{"v":1}', "other": "x"}
    )
    return KubeCluster.from_kubeconfig(kubeconfig, request_timeout_s=5)


def test_read_spec_ready_annotation_and_version(kube: KubeApiStub, kubeconfig: str) -> None:
    view = make(kube, kubeconfig).read("ml", "worker")
    assert (view.replicas, view.ready, view.annotation) == (3, 2, '{"v":1}')
    assert view.resource_version == "100"
    assert {r.path for r in kube.requests} == {
        "/apis/apps/v1/namespaces/ml/deployments/worker/scale",
        "/apis/apps/v1/namespaces/ml/deployments/worker",
    }
    assert all(r.authorization == "Bearer test-token" for r in kube.requests)


def test_patch_replicas_is_a_merge_patch_of_the_scale_subresource(
    kube: KubeApiStub, kubeconfig: str
) -> None:
    cluster = make(kube, kubeconfig)
    cluster.patch_replicas("ml", "worker", 7, "100")
    [patch] = kube.patches("scale")
    assert patch.path == "/apis/apps/v1/namespaces/ml/deployments/worker/scale"
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 7}, "metadata": {"resourceVersion": "100"}}
    assert kube.deployments[("ml", "worker")].replicas == 7
    assert kube.patches("deployment") == []  # the Deployment spec is never written


def test_write_state_touches_only_the_annotation(kube: KubeApiStub, kubeconfig: str) -> None:
    cluster = make(kube, kubeconfig)
    cluster.write_state("ml", "worker", '{"v":1,"recs":[]}')
    [patch] = kube.patches("deployment")
    assert patch.path == "/apis/apps/v1/namespaces/ml/deployments/worker"
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"metadata": {"annotations": {ANNOTATION: '{"v":1,"recs":[]}'}}}
    assert kube.deployments[("ml", "worker")].annotations["other"] == "x"


def test_stale_resource_version_is_a_409(kube: KubeApiStub, kubeconfig: str) -> None:
    cluster = make(kube, kubeconfig)
    with pytest.raises(ClusterError) as info:
        cluster.patch_replicas("ml", "worker", 5, "99")
    assert info.value.status == 409 and "modified" in str(info.value)
    assert kube.deployments[("ml", "worker")].replicas == 3


@pytest.mark.parametrize("status", [403, 404, 500, 503])
def test_refusals_name_the_call_and_status(
    kube: KubeApiStub, kubeconfig: str, status: int
) -> None:
    cluster = make(kube, kubeconfig)
    kube.faults[("PATCH", "scale", "ml/worker")] = [status]
    with pytest.raises(ClusterError) as info:
        cluster.patch_replicas("ml", "worker", 5, None)
    text = str(info.value)
    assert info.value.status == status
    assert f"HTTP {status}" in text and "PATCH deployments/scale ml/worker" in text
    assert kube.deployments[("ml", "worker")].replicas == 3


def test_missing_deployment_is_404(kube: KubeApiStub, kubeconfig: str) -> None:
    cluster = make(kube, kubeconfig)
    with pytest.raises(ClusterError) as info:
        cluster.read("ml", "nope")
    assert info.value.status == 404 and "ml/nope" in str(info.value)


def test_unreachable_api_is_named(tmp_path: object) -> None:
    cluster = KubeCluster.from_token("http://127.0.0.1:9", "t", None, request_timeout_s=2)
    with pytest.raises(ClusterError, match="unreachable"):
        cluster.read("ml", "worker")


def test_bad_kubeconfig_is_a_cluster_error(tmp_path: object) -> None:
    with pytest.raises(ClusterError, match="Kubernetes config"):
        KubeCluster.from_kubeconfig("/nonexistent/kubeconfig")
