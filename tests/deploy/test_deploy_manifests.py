"""The rendered Kubernetes manifests: what the worker needs from its pod, per GPU type."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
from deploy_helpers import EXAMPLES, FAKE_DIGEST, OVERLAYS, REPO, env_of, find, one

from worker.config import WorkerSettings, unknown_variable

GPU_OVERLAYS = {
    "gke-l4": "nvidia-l4",
    "gke-t4": "nvidia-tesla-t4",
    "gke-a100": "nvidia-tesla-a100",
}
LONG_POLL_S = 20  # SQS WaitTimeSeconds the worker's receivers use


def pod_spec(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_overlays_are_the_four_gpu_types_and_cpu() -> None:
    assert sorted(OVERLAYS) == sorted([*GPU_OVERLAYS, "cpu"])


VARIANTS = [f"overlays/{o}" for o in OVERLAYS] + [f"examples/{e}" for e in EXAMPLES]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_renders_one_worker_deployment(render, variant: str) -> None:
    docs = render(variant)
    deployment = one(docs, "Deployment")
    # the scaler owns the replica count: a replicas field would reset it on each apply
    assert "replicas" not in deployment["spec"]
    assert one(docs, "ServiceAccount")
    assert one(docs, "PodDisruptionBudget")
    assert one(docs, "NetworkPolicy")


@pytest.mark.parametrize("overlay", sorted(GPU_OVERLAYS))
def test_gpu_overlay_pins_its_accelerator_and_requests_one_gpu(render, overlay: str) -> None:
    spec = pod_spec(render(f"overlays/{overlay}"))
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": GPU_OVERLAYS[overlay]}
    resources = spec["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    # memory request == limit: a GPU pod is not evicted first under node memory pressure
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    tolerations = {(t["key"], t.get("value"), t["effect"]) for t in spec["tolerations"]}
    assert ("nvidia.com/gpu", None, "NoSchedule") in tolerations
    assert ("mlonly", "true", "NoSchedule") in tolerations


def test_gpu_overlays_differ_where_the_hardware_does(render) -> None:
    env = {o: env_of(render(f"overlays/{o}")) for o in GPU_OVERLAYS}
    # Turing (T4) has no bfloat16; L4 and A100 do
    assert env["gke-t4"]["WORKER_DTYPE"] == "float16"
    assert env["gke-l4"]["WORKER_DTYPE"] == env["gke-a100"]["WORKER_DTYPE"] == "bfloat16"
    budgets = [int(env[o]["WORKER_MAX_BATCH_TOKENS"]) for o in ("gke-t4", "gke-l4", "gke-a100")]
    assert budgets == sorted(budgets) and len(set(budgets)) == 3


def test_cpu_overlay_has_no_gpu_and_no_gke_only_kinds(render) -> None:
    docs = render("overlays/cpu")
    assert "nvidia.com/gpu" not in repr(docs)
    assert "gke-accelerator" not in repr(docs)
    assert not find(docs, "PodMonitoring")  # its CRD exists only on GKE
    assert env_of(docs)["WORKER_DEVICE"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_security(render, overlay: str) -> None:
    spec = pod_spec(render(f"overlays/{overlay}"))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # read-only root: every path the libraries write to is a volume
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/tmp", "/cache"):
        assert "emptyDir" in volumes[mounts[path]], path
    # the kubelet evicts a pod whose local storage passes its limit: the volumes must fit
    sizes = [v["emptyDir"]["sizeLimit"] for v in volumes.values() if "emptyDir" in v]
    gib = sum(int(size.removesuffix("Gi")) for size in sizes)
    limit = int(container["resources"]["limits"]["ephemeral-storage"].removesuffix("Gi"))
    assert gib <= limit, (gib, limit)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_drain_fit_the_worker(render, overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    spec = pod_spec(docs)
    container = spec["containers"][0]
    env = env_of(docs)
    port = container["ports"][0]
    assert port["containerPort"] == int(env["WORKER_HTTP_PORT"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    # model loading (download, to GPU, warm-up) gets at least 10 minutes
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    # SIGTERM: the worker drains for WORKER_SHUTDOWN_TIMEOUT_S after a long poll returns;
    # the kubelet's SIGKILL must come later
    default = WorkerSettings.model_fields["shutdown_timeout_s"].default
    shutdown = float(env.get("WORKER_SHUTDOWN_TIMEOUT_S", default))
    assert spec["terminationGracePeriodSeconds"] > shutdown + LONG_POLL_S


@pytest.mark.parametrize("variant", ["overlays/gke-l4", "examples/team-a-l4"])
def test_web_identity_for_sqs_without_keys(render, variant: str) -> None:
    docs = render(variant)
    spec = pod_spec(docs)
    env = env_of(docs)
    assert env["AWS_ROLE_ARN"].startswith("arn:aws:iam::")
    # boto3 takes the region from AWS_DEFAULT_REGION only; AWS_REGION alone leaves it unset
    assert env["AWS_DEFAULT_REGION"] in env["WORKER_QUEUE_URL"]
    token_file = env["AWS_WEB_IDENTITY_TOKEN_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    sources = {
        v["name"]: v["projected"]["sources"] for v in spec["volumes"] if "projected" in v
    }
    (name, [source]), = sources.items()
    token = source["serviceAccountToken"]
    assert token["audience"] == "sts.amazonaws.com"
    assert token_file == f"{mounts[name]}/{token['path']}"
    assert spec["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    # no AWS keys anywhere in what gets applied
    assert not find(docs, "Secret")
    assert "AWS_SECRET_ACCESS_KEY" not in repr(docs)


def test_every_worker_variable_is_a_worker_setting(render) -> None:
    """A misspelt WORKER_* name would be ignored silently by the worker: catch it here."""
    known = {f"WORKER_{name.upper()}" for name in WorkerSettings.model_fields}
    for variant in VARIANTS:
        names = {k for k in env_of(render(variant)) if k.startswith("WORKER_")}
        assert names - known == set(), variant
        assert "WORKER_QUEUE_URL" in names


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_a_worker_that_can_start(render, variant: str) -> None:
    """What the worker itself checks at start (unknown names, values), plus what only shows in
    production: a Hub id under the image's HF_HUB_OFFLINE=1 cannot load (team-c named SigLIP
    with the Hub off); a classify task on the default MiniLM has no trained classifier (team-b
    set none); a reply_to prefix in another account than the queues (team-b inherited the
    base's placeholder account)."""
    env = env_of(render(variant))
    assert unknown_variable(env) is None
    settings = WorkerSettings(
        **{k.removeprefix("WORKER_").lower(): v for k, v in env.items() if k.startswith("WORKER_")}
    )
    if settings.task in ("classify", "image-classify") or "WORKER_MODEL" in env:
        assert env.get("WORKER_MODEL"), f"{variant}: {settings.task} needs WORKER_MODEL"
        if not env["WORKER_MODEL"].startswith("/"):  # a Hub id, not a baked or mounted folder
            assert env.get("HF_HUB_OFFLINE") == "0", f"{variant}: {env['WORKER_MODEL']} offline"
    queue_account = settings.queue_url.split("/")[3]
    for pattern in settings.reply_to_patterns:
        assert f"/{queue_account}/" in pattern or f":{queue_account}:" in pattern, variant


@pytest.mark.parametrize("variant", ["overlays/gke-l4", "examples/team-a-l4"])
def test_scaler_role_is_get_patch_on_the_one_deployment(render, variant: str) -> None:
    docs = render(variant)
    deployment_name = one(docs, "Deployment")["metadata"]["name"]
    role = one(docs, "Role")
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    rules = {
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["resourceNames"]), tuple(r["verbs"]))
        for r in role["rules"]
    }
    assert rules == {
        (("apps",), ("deployments/scale",), (deployment_name,), ("get", "patch")),
        (("apps",), ("deployments",), (deployment_name,), ("get", "patch")),
    }
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]


def test_name_prefix_reaches_every_reference(render) -> None:
    """namePrefix must follow into Role resourceNames, scaleTargetRef and authenticationRef."""
    docs = render("examples/team-b-keda-t4")
    deployment = one(docs, "Deployment")
    name = deployment["metadata"]["name"]
    assert name.startswith("team-b-")
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    auth = one(docs, "TriggerAuthentication")
    assert scaled["spec"]["triggers"][0]["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    docs_a = render("examples/team-a-l4")
    role = one(docs_a, "Role")
    assert role["rules"][0]["resourceNames"] == [one(docs_a, "Deployment")["metadata"]["name"]]


# aws-sqs-queue trigger metadata KEDA reads (keda.sh scalers/aws-sqs-queue); the CRD types
# `metadata` as a free map, so a typo there passes the schema and must be caught here
KEDA_SQS_KEYS = {
    "queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion",
    "awsEndpoint", "scaleOnInFlight", "scaleOnDelayed", "identityOwner",
}


def test_keda_trigger_reads_the_workers_queue(render) -> None:
    docs = render("examples/team-b-keda-t4")
    trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "aws-sqs-queue"
    assert set(trigger["metadata"]) <= KEDA_SQS_KEYS
    env = env_of(docs)
    assert trigger["metadata"]["queueURLFromEnv"] in env
    # the region patched by the team overlay matches the queue's
    assert f"sqs.{trigger['metadata']['awsRegion']}." in env[trigger["metadata"]["queueURLFromEnv"]]


def test_monitoring_selects_the_worker_pods(render) -> None:
    docs = render("overlays/gke-l4")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in pod_spec(docs)["containers"][0]["ports"]}
    monitor = one(docs, "PodMonitoring")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_network_policy_allows_only_dns_and_https_out(render) -> None:
    policy = one(render("overlays/gke-l4"), "NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8080}


def _worker_metric_names() -> set[str]:
    """The series names the worker exports, read from a live registry (not a list kept here)."""
    from prometheus_client import CollectorRegistry

    from worker.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for family in registry.collect():
        # a labelled series has no sample before its first use: derive names from the type
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


PROMQL_METRIC = re.compile(r"\b(gpuqueue_[a-z0-9_]+)")


def test_alert_rules_use_metrics_the_worker_exports(render) -> None:
    rules = one(render("examples/team-a-l4"), "Rules")
    exported = _worker_metric_names()
    alerts = set()
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            used = set(PROMQL_METRIC.findall(rule["expr"]))
            assert used, rule
            assert used <= exported, f"{rule.get('alert') or rule.get('record')}: {used - exported}"
            alerts.add(rule.get("alert"))
    # the three (DLQ not empty, oldest message age, worker not ready)
    assert {
        "GpuqueueWorkerNotReady",
        "GpuqueueOldestMessageAge",
        "GpuqueueDeadLetterQueueNotEmpty",
    } <= alerts


def test_queue_depth_rules_take_the_max_across_pods(render) -> None:
    """Every replica reports the same queue-wide gauges: a sum() would count the DLQ N times."""
    rules = one(render("examples/team-a-l4"), "Rules")
    queue_wide = r"(gpuqueue_queue_messages|gpuqueue_oldest_message_age_seconds)\b"
    aggregated = re.compile(r"(\w+)(?: by \([^)]*\))? \((?:max_over_time\()?" + queue_wide)
    uses = 0
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            found = aggregated.findall(rule["expr"])
            assert len(found) == len(re.findall(queue_wide, rule["expr"])), rule["expr"]
            assert all(op == "max" for op, _ in found), rule["expr"]
            uses += len(found)
    assert uses >= 2


def test_dashboard_uses_metrics_the_worker_exports() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "gpuqueue-dashboard.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    used = {m for e in exprs for m in PROMQL_METRIC.findall(e)}
    assert used and used <= _worker_metric_names(), used - _worker_metric_names()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput", "batch size", "queue wait", "padding", "gpu memory", "replicas"):
        assert topic in titles, topic


def _apply(image: str, overlay: str = "gke-l4") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "apply.sh")],
        env={**os.environ, "RENDER_ONLY": "1", "OVERLAY": overlay, "IMAGE": image},
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_make_deploy_pins_the_image_by_digest(kubectl: str) -> None:
    done = _apply(f"europe-docker.pkg.dev/p/r/gpuqueue-worker@{FAKE_DIGEST}", "examples/team-a-l4")
    assert done.returncode == 0, done.stderr
    images = re.findall(r"^\s+image: (\S+)$", done.stdout, re.M)
    assert images == [f"europe-docker.pkg.dev/p/r/gpuqueue-worker@{FAKE_DIGEST}"]


@pytest.mark.parametrize(
    "image", ["reg/gpuqueue-worker:latest", "reg/gpuqueue-worker", "reg/w@sha256:abc"]
)
def test_make_deploy_refuses_anything_but_a_digest(kubectl: str, image: str) -> None:
    done = _apply(image)
    assert done.returncode == 2
    assert "digest" in done.stderr


def test_image_tag_from_branch_names() -> None:
    """Branch names with '/' and other characters registries refuse become valid tags."""
    cases = {
        "feature/GPU-42": "feature-gpu-42",
        "refs/heads/dependabot/pip/torch-2.13.0": "dependabot-pip-torch-2.13.0",
        "-x//y@@z": "x-y-z",
        "main": "main",
        "a" * 300: "a" * 128,
    }
    tag_re = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    for ref, expected in cases.items():
        done = subprocess.run(
            ["bash", str(REPO / "deploy" / "image" / "tag.sh"), ref],
            capture_output=True, text=True, check=True,
        )
        tag = done.stdout.strip()
        assert tag == expected, ref
        assert tag_re.match(tag), tag


def test_workflows_build_base_weekly_and_on_change_and_app_per_commit() -> None:
    import yaml

    flows = REPO / ".github" / "workflows"
    # PyYAML reads the `on:` key as True (YAML 1.1)
    base = yaml.safe_load((flows / "base-image.yml").read_text())
    base_on = base[True]
    assert base_on["schedule"][0]["cron"].split()[-1] in {"1", "mon", "MON"}  # weekly
    changed = set(base_on["push"]["paths"])
    inputs = {"Dockerfile", "deploy/requirements-base.txt", "deploy/requirements-model.txt"}
    assert inputs <= changed
    app = yaml.safe_load((flows / "app-image.yml").read_text())
    app_steps = " ".join(s.get("run", "") for s in app["jobs"]["app"]["steps"])
    assert "--target app" in app_steps and "GITHUB_SHA" in app_steps
    assert "deploy/image/tag.sh" in app_steps
    for flow in (base, app):
        # Workload Identity Federation, never a stored key
        assert flow["permissions"]["id-token"] == "write"
        assert "credentials_json" not in json.dumps(flow)
    ci = yaml.safe_load((flows / "ci.yml").read_text())
    ci_steps = " ".join(s.get("run", "") for job in ci["jobs"].values() for s in job["steps"])
    assert "make test" in ci_steps and "make image image-test" in ci_steps


def test_image_base_holds_every_worker_dependency() -> None:
    """The app stage installs nothing: each runtime dependency of the worker must be in the base."""
    import tomllib

    def name(requirement: str) -> str:
        bare = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
        return bare.lower().replace("_", "-")

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {name(r) for r in project["dependencies"] + project["optional-dependencies"]["worker"]}
    listed = {
        name(line)
        for line in (REPO / "deploy" / "requirements-base.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert needed <= listed, needed - listed
    torch_pin = next(r for r in project["optional-dependencies"]["worker"] if r.startswith("torch"))
    assert torch_pin in (REPO / "deploy" / "requirements-base.txt").read_text()
