"""The Kubernetes adapter (the real `kubernetes` client): read replicas, patch the scale.

Only two things are ever written:
* `PATCH .../deployments/NAME/scale` with a JSON merge patch `{"metadata": {"resourceVersion": RV},
  "spec": {"replicas": N}}`: the scale subresource, never the Deployment spec, so `kubectl apply`
  and the scaler do not fight; the resourceVersion makes a concurrent change a 409 (the runner
  re-reads, re-decides and retries once) instead of a lost update;
* `PATCH .../deployments/NAME` with a merge patch touching only the state annotation.
RBAC needed: get/patch on deployments/scale and get/patch on the named deployments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scaler.state import ANNOTATION

MERGE_PATCH = "application/merge-patch+json"


class ClusterError(RuntimeError):
    """Names the call, the object and the API's answer. `status` is the HTTP status, if any;
    `skipped`: no call was made (the cluster had already failed this run)."""

    def __init__(self, message: str, status: int | None = None, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.skipped = skipped


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    replicas: int
    ready: int
    annotation: str | None
    resource_version: str | None


class KubeCluster:
    def __init__(self, api_client: Any, request_timeout_s: float = 10.0) -> None:
        from kubernetes.client.api.apps_v1_api import AppsV1Api

        self._client = api_client
        self._apps = AppsV1Api(api_client)
        self._timeout = request_timeout_s
        self.host = getattr(api_client.configuration, "host", "?")

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_token(
        cls, host: str, token: str, ca_pem: bytes | None, request_timeout_s: float = 10.0
    ) -> KubeCluster:
        from kubernetes.client.api_client import ApiClient
        from kubernetes.client.configuration import Configuration

        conf = Configuration(
            host=host,
            api_key={"BearerToken": token},
            api_key_prefix={"BearerToken": "Bearer"},
            ca_cert_data=ca_pem.decode() if ca_pem else None,
        )
        conf.retries = 1
        return cls(ApiClient(conf), request_timeout_s)

    @classmethod
    def from_kubeconfig(
        cls, path: str | None, context: str | None = None, request_timeout_s: float = 10.0
    ) -> KubeCluster:
        """A kubeconfig file (other clusters, tests), or in-cluster config when path is None."""
        from kubernetes.client.api_client import ApiClient
        from kubernetes.client.configuration import Configuration
        from kubernetes.config import ConfigException, load_incluster_config, load_kube_config

        conf = Configuration()
        try:
            if path is None:
                load_incluster_config(client_configuration=conf)
            else:
                load_kube_config(config_file=path, context=context, client_configuration=conf)
        except (ConfigException, OSError) as exc:
            where = path or "in-cluster service account"
            raise ClusterError(f"Kubernetes config ({where}) unusable: {exc}") from None
        conf.retries = 1
        return cls(ApiClient(conf), request_timeout_s)

    # ---------------------------------------------------------------- calls

    def _call(self, what: str, ns: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            detail = exc.reason or ""
            try:
                body = json.loads(exc.body or "")
                detail = body.get("message") or detail
            except (ValueError, AttributeError):
                pass
            raise ClusterError(
                f"Kubernetes {what} {ns}/{name} at {self.host}: HTTP {exc.status} {detail}".strip(),
                status=exc.status,
            ) from None
        except (HTTPError, OSError) as exc:
            raise ClusterError(
                f"Kubernetes {what} {ns}/{name}: API at {self.host} unreachable ({exc})"
            ) from None

    def read(self, namespace: str, name: str) -> DeploymentView:
        scale_raw = self._call(
            "GET deployments/scale",
            namespace,
            name,
            self._apps.read_namespaced_deployment_scale,
            name,
            namespace,
            _preload_content=False,
        )
        dep_raw = self._call(
            "GET deployment",
            namespace,
            name,
            self._apps.read_namespaced_deployment,
            name,
            namespace,
            _preload_content=False,
        )
        try:
            scale = json.loads(scale_raw.data)
            dep = json.loads(dep_raw.data)
            replicas = int(scale.get("spec", {}).get("replicas", 0) or 0)
            ready = int((dep.get("status") or {}).get("readyReplicas", 0) or 0)
            annotations = (dep.get("metadata") or {}).get("annotations") or {}
            rv = (scale.get("metadata") or {}).get("resourceVersion")
        except (ValueError, TypeError, AttributeError) as exc:
            raise ClusterError(
                f"Kubernetes GET {namespace}/{name}: unreadable response ({exc})"
            ) from None
        return DeploymentView(
            namespace=namespace,
            name=name,
            replicas=replicas,
            ready=ready,
            annotation=annotations.get(ANNOTATION),
            resource_version=rv,
        )

    def patch_replicas(
        self, namespace: str, name: str, replicas: int, resource_version: str | None
    ) -> None:
        if replicas < 0:
            raise ValueError(f"refusing to patch {namespace}/{name} to {replicas} replicas")
        body: dict[str, Any] = {"spec": {"replicas": int(replicas)}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self._call(
            "PATCH deployments/scale",
            namespace,
            name,
            self._apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            body,
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )

    def write_state(self, namespace: str, name: str, text: str) -> None:
        body = {"metadata": {"annotations": {ANNOTATION: text}}}
        self._call(
            "PATCH deployment annotation",
            namespace,
            name,
            self._apps.patch_namespaced_deployment,
            name,
            namespace,
            body,
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )
