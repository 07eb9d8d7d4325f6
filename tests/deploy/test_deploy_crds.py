"""Custom resources (KEDA, GKE managed Prometheus) against the CRD schemas in ../shared/crds."""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deploy_helpers import EXAMPLES, OVERLAYS, REPO


def _load_validator() -> ModuleType:
    # deploy/ is not a package (it holds scripts); load the script as a module
    path = REPO / "deploy" / "validate_crds.py"
    spec = importlib.util.spec_from_file_location("validate_crds", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["validate_crds"] = module
    spec.loader.exec_module(module)
    return module


validate_crds = _load_validator()


@pytest.fixture(scope="module")
def schemas() -> dict[Any, dict[str, Any]]:
    directory: Path = validate_crds.crds_dir()
    if not directory.is_dir():
        pytest.skip(f"no CRD schemas at {directory} (../shared/crds is absent): CRD checks skipped")
    loaded: dict[Any, dict[str, Any]] = validate_crds.load_schemas(directory)
    return loaded


def all_docs(render: Callable[[str], tuple[dict[str, Any], ...]]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for variant in [f"overlays/{o}" for o in OVERLAYS] + [f"examples/{e}" for e in EXAMPLES]:
        docs.extend(render(variant))
    return docs


def test_schemas_cover_the_four_custom_kinds(schemas) -> None:
    kinds = {kind for _, _, kind in schemas}
    assert {"ScaledObject", "TriggerAuthentication", "PodMonitoring", "Rules"} <= kinds


def test_every_custom_resource_matches_its_schema(render, schemas) -> None:
    checked, findings = validate_crds.validate(all_docs(render), schemas)
    assert findings == []
    # each of the four kinds appears in some variant, so each was checked
    kinds = {d["kind"] for d in all_docs(render)}
    assert {"ScaledObject", "TriggerAuthentication", "PodMonitoring", "Rules"} <= kinds
    assert checked >= 4


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"),
    [
        # a field KEDA does not have (typo of scaleTargetRef) is rejected, not silently pruned
        ("ScaledObject", ("spec", "scaleTargetReff"), {"name": "x"}, "scaleTargetReff"),
        ("ScaledObject", ("spec", "minReplicaCount"), "zero", "is not of type 'integer'"),
        ("TriggerAuthentication", ("spec", "podIdentity", "provider"), "aws-irsa", "is not one of"),
        ("Rules", ("spec", "groups", 0, "interval"), "one minute", "is not a 'duration'"),
        ("PodMonitoring", ("spec", "endpoints", 0, "interval"), "soon", "soon"),
    ],
)
def test_validator_rejects_broken_resources(render, schemas, kind, path, value, expected) -> None:
    """The check can fail: each mutation of a valid resource must produce a finding."""
    docs = render("examples/team-b-keda-t4") + render("examples/team-a-l4")
    original = next(d for d in docs if d["kind"] == kind)
    broken = copy.deepcopy(original)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _, findings = validate_crds.validate([broken], schemas)
    assert findings, f"{kind} with {path}={value!r} passed"
    assert any(expected in str(f) for f in findings), findings


def test_unknown_version_of_a_known_group_is_reported(schemas) -> None:
    doc = {"apiVersion": "keda.sh/v9", "kind": "ScaledObject", "metadata": {"name": "x"}}
    _, findings = validate_crds.validate([doc], schemas)
    assert "no schema" in str(findings[0])
