"""Helpers shared by the deployment tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
EXAMPLES = sorted(p.name for p in (K8S / "examples").iterdir() if p.is_dir())
FAKE_DIGEST = "sha256:" + "0" * 64


def find(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = find(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def env_of(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The worker's environment: its ConfigMap (envFrom) plus the container's own env."""
    deployment = one(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config_names = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
    env: dict[str, str] = {}
    for cm in find(docs, "ConfigMap"):
        if cm["metadata"]["name"] in config_names:
            env.update(cm.get("data", {}))
    env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
    return env
