"""The CLI (`python -m scaler once`) and the Lambda handler run the way Lambda runs it:
`awslambdaric` (the AWS Lambda Python runtime interface client) polling a local Runtime API stub,
with a real local SQS server and the Kubernetes API stub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from http_stub import send_body
from kubeapi_stub import FakeDeployment, KubeApiStub

ROOT = Path(__file__).resolve().parents[2]


def queue_with(endpoint: str, n: int) -> str:
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName=f"cli-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(start, min(n, start + 10))],
        )
    return url


def scaler_env(targets: list[dict[str, Any]], kubeconfig: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALER_")}
    env.update(
        SCALER_TARGETS=json.dumps(targets),
        SCALER_KUBECONFIG=kubeconfig,
        SCALER_DRAIN_RATE_SOURCE="prior",
        SCALER_RUNS_PER_INVOCATION="1",
        AWS_ENDPOINT_URL=endpoint,
    )
    return env


def test_once_dry_run_json(fauxqs_server: Any, kube: KubeApiStub, kubeconfig: str) -> None:
    url = queue_with(fauxqs_server.endpoint_url, 30)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    env = scaler_env([{"queue_url": url, "deployment": "ml/a"}], kubeconfig,
                     fauxqs_server.endpoint_url)
    proc = subprocess.run([sys.executable, "-m", "scaler", "once", "--dry-run", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [target] = json.loads(proc.stdout)["targets"]
    assert (target["visible"], target["current"], target["desired"]) == (30, 0, 1)
    assert target["dry_run"] and not target["patched"]
    assert all(r.method == "GET" for r in kube.requests)


def test_once_lines_and_nonzero_exit_when_a_target_fails(
    fauxqs_server: Any, kube: KubeApiStub, kubeconfig: str
) -> None:
    url = queue_with(fauxqs_server.endpoint_url, 30)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    targets = [{"queue_url": url, "deployment": "ml/a"},
               {"queue_url": url, "deployment": "ml/missing"}]
    env = scaler_env(targets, kubeconfig, fauxqs_server.endpoint_url)
    proc = subprocess.run([sys.executable, "-m", "scaler", "once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    ok, bad = proc.stdout.strip().splitlines()
    assert ok.startswith("ml/a: queue visible=30") and "-> 1 [patched]" in ok
    assert bad.startswith("ml/missing: FAILED") and "HTTP 404" in bad
    assert kube.deployments[("ml", "a")].replicas == 1


def test_once_config_error_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALER_")}
    env["SCALER_TARGETS"] = '[{"queue_url": "q", "deployment": "no-namespace"}]'
    proc = subprocess.run([sys.executable, "-m", "scaler", "once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "SCALER_TARGETS[0].deployment" in proc.stderr


@pytest.mark.parametrize(
    ("unset", "extra", "named"),
    [
        (("AWS_REGION", "AWS_DEFAULT_REGION"), {}, "AWS_REGION"),
        ((), {"AWS_PROFILE": "no-such-profile"}, "AWS_PROFILE"),
    ],
)
def test_once_without_a_usable_aws_environment_is_a_one_line_config_error(
    tmp_path: Path, kubeconfig: str, unset: tuple[str, ...], extra: dict[str, str], named: str
) -> None:
    """No region (or a profile that is not there) escaped from build_deps as botocore's
    40-line traceback, with exit code 1 ("a target failed") instead of 2."""
    env = scaler_env([{"queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                       "deployment": "ml/a"}], kubeconfig, "http://127.0.0.1:9")
    for key in (*unset, "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(key, None)
    env.update(extra, AWS_CONFIG_FILE=str(tmp_path / "none"), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "scaler", "once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and named in proc.stderr, proc.stderr


# ---------------------------------------------------------------- Lambda, via awslambdaric


class RuntimeApiStub:
    """The Lambda Runtime API (2018-06-01): /runtime/invocation/next, /response, /error."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = list(events)
        self.results: dict[str, tuple[str, Any]] = {}
        self.done = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                send_body(self, status, body, headers)

            def do_GET(self) -> None:
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self._reply(404, b"{}", {})
                if not stub.events:
                    stub.done.set()
                    time.sleep(30)  # a real Runtime API blocks here until the next event
                    return self._reply(500, b"{}", {})
                request_id = f"req-{len(stub.results) + 1}"
                event = json.dumps(stub.events.pop(0)).encode()
                self._reply(200, event, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:000000000000:function:gpuqueue-scaler",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                })

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.split("/")
                kind = parts[-1]
                key = parts[-2] if kind in ("response", "error") else kind
                stub.results[key] = (kind, json.loads(body or b"null"))
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lambda_run() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []
    stubs: list[RuntimeApiStub] = []

    def run(events: list[dict[str, Any]], env: dict[str, str]) -> RuntimeApiStub:
        stub = RuntimeApiStub(events)
        stubs.append(stub)
        env = dict(env, AWS_LAMBDA_RUNTIME_API=stub.address, AWS_LAMBDA_FUNCTION_NAME="scaler",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_LOG_FORMAT="Text")
        proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "scaler.handler.handler"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        assert stub.done.wait(90), "the runtime never came back for the next event"
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        stub.log = out  # type: ignore[attr-defined]
        return stub

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for stub in stubs:
        stub.stop()


def test_lambda_invocation_patches_the_scale(
    fauxqs_server: Any, kube: KubeApiStub, kubeconfig: str, lambda_run: Any
) -> None:
    url = queue_with(fauxqs_server.endpoint_url, 130)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    env = scaler_env([{"queue_url": url, "deployment": "ml/a", "drain_rate_prior": 1.0,
                       "target_wait_s": 60}],
                     kubeconfig, fauxqs_server.endpoint_url)
    stub = lambda_run([{"source": "aws.events", "detail-type": "Scheduled Event"}], env)
    kind, body = stub.results["req-1"]
    assert kind == "response", stub.log  # type: ignore[attr-defined]
    assert body["targets"][0]["desired"] == 3  # ceil(130 / 60 s / 1 msg/s)
    [patch] = kube.patches("scale")
    assert patch.path == "/apis/apps/v1/namespaces/ml/deployments/a/scale"
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 3}, "metadata": {"resourceVersion": "100"}}


def test_lambda_raises_when_a_target_failed(
    fauxqs_server: Any, kube: KubeApiStub, kubeconfig: str, lambda_run: Any
) -> None:
    url = queue_with(fauxqs_server.endpoint_url, 20)
    missing = url.rsplit("/", 1)[0] + "/no-such-queue"
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    kube.deployments[("ml", "b")] = FakeDeployment(replicas=0, ready=0)
    targets = [{"queue_url": missing, "deployment": "ml/b"},
               {"queue_url": url, "deployment": "ml/a"}]
    stub = lambda_run([{}], scaler_env(targets, kubeconfig, fauxqs_server.endpoint_url))
    kind, body = stub.results["req-1"]
    assert kind == "error"
    assert body["errorType"] == "RunFailed" and "no-such-queue" in body["errorMessage"]
    assert kube.deployments[("ml", "a")].replicas == 1  # the healthy target was still served
    assert kube.deployments[("ml", "b")].replicas == 0


def test_lambda_decides_several_times_per_invocation(
    fauxqs_server: Any, kube: KubeApiStub, kubeconfig: str, lambda_run: Any
) -> None:
    url = queue_with(fauxqs_server.endpoint_url, 10)
    kube.deployments[("ml", "a")] = FakeDeployment(replicas=0, ready=0)
    env = scaler_env([{"queue_url": url, "deployment": "ml/a"}], kubeconfig,
                     fauxqs_server.endpoint_url)
    env.update(SCALER_RUNS_PER_INVOCATION="3", SCALER_RUN_INTERVAL_S="0.3")
    stub = lambda_run([{}], env)
    kind, body = stub.results["req-1"]
    assert kind == "response" and body["runs"] == 3
    scale_reads = [r for r in kube.requests if r.method == "GET" and r.path.endswith("/scale")]
    assert len(scale_reads) == 3
    assert len(kube.patches("scale")) == 1  # 0 -> 1 once; the next two runs agree with it


class _LambdaClock:
    """The invocation's time, moved on by the runs and the pauses (no real waiting)."""

    def __init__(self, timeout_s: float) -> None:
        self.now = 0.0
        self.timeout_s = timeout_s
        self.runs: list[tuple[float, float]] = []  # (start, end) of each run

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def get_remaining_time_in_millis(self) -> int:  # the Lambda context's
        return int((self.timeout_s - self.now) * 1000)


@pytest.mark.parametrize("run_s", [1.0, 12.0, 25.0])
def test_the_handler_starts_no_run_it_cannot_finish_before_the_timeout(
    monkeypatch: pytest.MonkeyPatch, run_s: float
) -> None:
    """A run that overran its 20 s slot made the check *add* the overrun to the time left:
    with 25 s runs in a 55 s invocation the third started with 5 s left, and Lambda killed it
    between its patch and its state write. Each run must now end with the margin to spare."""
    from scaler import handler, runner

    clock = _LambdaClock(timeout_s=55.0)

    def run_once(*_: Any) -> list[Any]:
        start = clock.now
        clock.now += run_s
        clock.runs.append((start, clock.now))
        return []

    monkeypatch.setattr(handler, "time", clock)
    monkeypatch.setattr(runner, "run_once", run_once)
    monkeypatch.setattr(runner, "build_deps", lambda settings: None)
    target = {"queue_url": "http://q", "deployment": "ml/a"}
    monkeypatch.setenv("SCALER_TARGETS", json.dumps([target]))
    monkeypatch.setenv("SCALER_RUNS_PER_INVOCATION", "3")
    monkeypatch.setenv("SCALER_RUN_INTERVAL_S", "20")
    result = handler.handler({}, clock)
    assert result["runs"] == len(clock.runs) >= 1
    assert all(end <= 55.0 - handler.SAFETY_MARGIN_S for _, end in clock.runs), clock.runs
    if run_s == 1.0:
        assert [start for start, _ in clock.runs] == [0.0, 20.0, 40.0]  # the usual schedule
