"""The Lambda bundle: built by deploy/lambda/build_zip.py (`make lambda-zip`), then imported and
run from the unzipped bundle alone (plus boto3, which the Lambda runtime provides) in a fresh,
read-only-bundle interpreter, as Lambda does.

The bundle is built for this interpreter's Python (`--python-version`), so the test can load its
binary wheels; `make lambda-zip` builds the same way for the template's runtime. A build takes
~20-40 s (pip --target from the registry), so an up-to-date build/lambda-test/scaler.zip is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubeapi_stub import FakeDeployment, KubeApiStub

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "lambda-test"
ZIP = OUT / "scaler.zip"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
BUILD = ROOT / "deploy" / "lambda" / "build_zip.py"
MB = 1_000_000


def _zip_is_fresh() -> bool:
    if not ZIP.exists():
        return False
    sources = [BUILD, *(ROOT / "scaler").glob("*.py")]
    return ZIP.stat().st_mtime > max(p.stat().st_mtime for p in sources)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _zip_is_fresh():
        proc = subprocess.run(
            [sys.executable, str(BUILD), "--out", str(OUT), "--python-version", PYTHON],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path_factory.mktemp("lambda")
    task = root / "task"
    with zipfile.ZipFile(ZIP) as zf:
        zf.extractall(task)
    # what the Lambda Python runtime provides besides the bundle: boto3 and its own deps
    runtime = root / "runtime"
    runtime.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "jmespath"):
        module = __import__(name)
        (runtime / name).symlink_to(Path(module.__file__).parent)
    os.chmod(task, 0o555)  # /var/task is read-only: no bytecode can be written at run time
    return root


def test_zip_sizes(bundle: Path) -> None:
    unzipped = sum(i.file_size for i in zipfile.ZipFile(ZIP).infolist())
    assert ZIP.stat().st_size < 25 * MB
    assert unzipped < 150 * MB
    names = zipfile.ZipFile(ZIP).namelist()
    assert "scaler/handler.py" in names
    assert not any(n.startswith(("boto3/", "botocore/", "torch/", "transformers/",
                                 "kubernetes/aio/")) for n in names)


def _fresh(bundle: Path, code: str, env: dict[str, str] | None = None) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALER_", "PYTHON"))}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = f"{bundle / 'task'}{os.pathsep}{bundle / 'runtime'}"
    full_env["PYTHONDONTWRITEBYTECODE"] = "1"
    # -S: no site-packages, so nothing leaks in from this virtualenv
    # cwd outside the repository: `-c` puts the cwd first on sys.path
    proc = subprocess.run([sys.executable, "-S", "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=120, cwd=bundle)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_handler_imports_from_the_bundle_alone_fast(bundle: Path) -> None:
    out = _fresh(bundle, """
import json, sys, time
t0 = time.perf_counter()
import scaler.handler
t1 = time.perf_counter()
import scaler.runner, scaler.cluster, scaler.gke, scaler.auth, scaler.queue, scaler.drain
import kubernetes.client.api.apps_v1_api, kubernetes.config
import google.cloud.container_v1, google.auth.aws, google.oauth2.service_account
t2 = time.perf_counter()
bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]
print(json.dumps({'handler_s': t1 - t0, 'first_run_imports_s': t2 - t0, 'bad': bad,
                  'file': scaler.handler.__file__}))
""")
    result = json.loads(out)
    print(f"\nimport scaler.handler: {result['handler_s']:.3f}s; all first-run imports: "
          f"{result['first_run_imports_s']:.2f}s")
    assert result["file"].startswith(str(bundle / "task"))
    assert result["bad"] == []
    assert result["handler_s"] < 1.0


def test_handler_runs_from_the_bundle(
    bundle: Path, fauxqs_server: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    sqs = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)
    url = sqs.create_queue(QueueName=f"zip-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    env = {
        "SCALER_TARGETS": json.dumps([{"queue_url": url, "deployment": "ml/a"}]),
        "SCALER_KUBECONFIG": kubeconfig,
        "SCALER_DRAIN_RATE_SOURCE": "prior",
        "SCALER_RUNS_PER_INVOCATION": "1",
        "AWS_ENDPOINT_URL": fauxqs_server.endpoint_url,
    }
    out = _fresh(bundle, """
import json
from scaler.handler import handler
print(json.dumps(handler({}, None)))
""", env)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["targets"][0]["desired"] == 1
    assert kube.deployments[("ml", "a")].replicas == 1
