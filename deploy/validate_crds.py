"""Validate rendered custom resources (KEDA, GKE managed Prometheus) against their CRD schemas.

The schemas are the upstream CRDs' `openAPIV3Schema`s, kept outside the project in
../shared/crds (GPUQUEUE_CRDS_DIR overrides). Validation is strict the way the API server's
field validation is: a field the schema does not declare is an error (so a typo such as
`queueUrlFromEnv` fails here instead of being silently pruned by the cluster). Not evaluated:
the CEL rules (`x-kubernetes-validations`), which need an API server.

    python deploy/validate_crds.py RENDERED.yaml ...   # exit 1 on an invalid resource,
                                                       # exit 0 with SKIP when no schemas exist
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CRDS_DIR = REPO.parent / "shared" / "crds"

# Prometheus durations ("30s", "1h30m"): the `format: duration` of the GMP CRDs
_PROM_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or (value != "" and bool(_PROM_DURATION.match(value)))


Key = tuple[str, str, str]  # (group, version, kind)


@dataclass(frozen=True)
class Finding:
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.message}"


def crds_dir() -> Path:
    return Path(os.environ.get("GPUQUEUE_CRDS_DIR", DEFAULT_CRDS_DIR))


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of an OpenAPI v3 schema that rejects undeclared fields where the API server would."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_schemas(directory: Path) -> dict[Key, dict[str, Any]]:
    """Every served version of every CRD in `directory`, keyed by (group, version, kind)."""
    schemas: dict[Key, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema and version.get("served", True):
                    schemas[(group, version["name"], kind)] = strict(schema)
    return schemas


def documents(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                yield doc


def validate(
    docs: Iterable[dict[str, Any]], schemas: dict[Key, dict[str, Any]]
) -> tuple[int, list[Finding]]:
    """(custom resources checked, findings); a CRD-group resource without a schema is a finding."""
    groups = {group for group, _, _ in schemas}
    checked, findings = 0, []
    for doc in docs:
        group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
        kind = str(doc.get("kind", ""))
        name = f"{kind}/{doc.get('metadata', {}).get('name', '?')}"
        if group not in groups:
            continue  # a built-in kind: kubernetes-validate's job
        schema = schemas.get((group, version, kind))
        if schema is None:
            findings.append(Finding(name, f"no schema for {group}/{version} {kind}"))
            continue
        checked += 1
        validator = jsonschema.Draft7Validator(schema, format_checker=FORMATS)
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in error.path) or "(root)"
            findings.append(Finding(name, f"{where}: {error.message}"))
    return checked, findings


def main(argv: list[str]) -> int:
    directory = crds_dir()
    if not directory.is_dir():
        print(f"SKIP CRD validation: no CRD schemas at {directory} (set GPUQUEUE_CRDS_DIR)")
        return 0
    schemas = load_schemas(directory)
    checked, findings = validate(documents(Path(p) for p in argv), schemas)
    for finding in findings:
        print(f"CRD INVALID {finding}")
    print(f"CRD validation: {checked} custom resources against {len(schemas)} schemas, "
          f"{len(findings)} problems")
    return 1 if findings or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
