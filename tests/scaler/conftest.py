"""Fixtures for the scaler's tests: a local Kubernetes API stub and a kubeconfig pointing at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kubeapi_stub import KubeApiStub


@pytest.fixture
def kube() -> Iterator[KubeApiStub]:
    stub = KubeApiStub()
    yield stub
    stub.stop()


@pytest.fixture
def kubeconfig(kube: KubeApiStub, tmp_path: Path) -> str:
    return kube.kubeconfig(tmp_path / "kubeconfig")
