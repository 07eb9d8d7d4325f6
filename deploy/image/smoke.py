"""Smoke-test the built worker image as a container (`make image-test`).

Runs the image with podman the way Kubernetes runs it (read-only root, /tmp and /cache as
tmpfs, all capabilities dropped, no privilege escalation, low nofile/nproc limits) against a
local SQS server (fauxqs) on the host's loopback, and checks that it:
  * runs as a non-root user,
  * answers /healthz, then /readyz once the bundled model is warm,
  * answers a request end to end (result on the result queue, request deleted),
  * exports its metrics,
  * keeps the HEALTHCHECK in the image, and the check passes,
  * exits 0 within the grace period on SIGTERM (the drain).

    python deploy/image/smoke.py IMAGE   (podman flags come in PODMAN_FLAGS, space-separated)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

import boto3

from worker.devsqs import free_port, start_fauxqs

T = TypeVar("T")
PODMAN = ["podman", *os.environ.get("PODMAN_FLAGS", "").split()]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, "--log-level", "error", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def check(ok: bool, message: str) -> None:
    print(("ok   " if ok else "FAIL ") + message, flush=True)
    if not ok:
        raise AssertionError(message)


def main(image: str) -> int:
    server = start_fauxqs()
    sqs = boto3.client(
        "sqs",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    requests_url = sqs.create_queue(QueueName="image-test-requests")["QueueUrl"]
    results_url = sqs.create_queue(QueueName="image-test-results")["QueueUrl"]
    port = free_port()
    name = f"gpuqueue-image-test-{os.getpid()}"
    started = time.monotonic()
    run = podman(
        "run", "--detach", "--name", name,
        # the host's loopback is where the test SQS listens
        "--network", "host",
        # as the Deployment's securityContext: read-only root, writable /tmp and /cache only
        "--read-only", "--tmpfs", "/tmp:rw,size=512m", "--tmpfs", "/cache:rw,size=512m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
        "--env", f"WORKER_QUEUE_URL={requests_url}",
        "--env", f"WORKER_RESULT_QUEUE_URL={results_url}",
        "--env", f"WORKER_HTTP_PORT={port}",
        "--env", "WORKER_DEVICE=cpu",
        "--env", f"AWS_ENDPOINT_URL={server.endpoint_url}",
        "--env", "AWS_DEFAULT_REGION=us-east-1",
        "--env", "AWS_ACCESS_KEY_ID=testing",
        "--env", "AWS_SECRET_ACCESS_KEY=testing",
        image,
        check=False,
    )
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        server.stop()
        return 1
    try:
        base = f"http://127.0.0.1:{port}"
        uid = podman("exec", name, "id", "-u").stdout.strip()
        check(uid not in ("", "0"), f"runs as a non-root user (uid {uid})")
        def healthy() -> bool:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                raise AssertionError(f"the container stopped before /healthz answered ({state})")
            return http_status(base + "/healthz") == 200

        wait_for("/healthz 200", healthy, 120)
        check(True, f"/healthz answers 200 ({time.monotonic() - started:.1f} s after start)")
        wait_for("/readyz 200", lambda: http_status(base + "/readyz") == 200, 300)
        check(True, f"/readyz answers 200: model warm ({time.monotonic() - started:.1f} s)")

        request = {"id": "image-test-1", "task": "embed", "inputs": "a container smoke test"}
        sent_at = time.monotonic()
        sqs.send_message(QueueUrl=requests_url, MessageBody=json.dumps(request))

        def result() -> dict[str, object] | None:
            got = sqs.receive_message(QueueUrl=results_url, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                body: dict[str, object] = json.loads(message["Body"])
                if body.get("id") == "image-test-1":
                    return body
            return None

        body = wait_for("the result message", result, 60)
        outputs = body.get("outputs")
        check(
            body.get("status") == "ok" and isinstance(outputs, list) and len(outputs) > 0,
            f"request answered: status={body.get('status')} in {time.monotonic() - sent_at:.2f} s",
        )

        def request_deleted() -> bool:
            attrs = sqs.get_queue_attributes(
                QueueUrl=requests_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            return all(int(v) == 0 for v in attrs.values())

        wait_for("the request to be deleted", request_deleted, 30)
        check(True, "request deleted from the queue after its result was written")

        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        check("gpuqueue_messages_succeeded_total 1.0" in metrics, "/metrics counts the success")

        config = json.loads(podman("image", "inspect", image).stdout)[0]
        check("healthz" in json.dumps(config.get("Healthcheck")), "image keeps its HEALTHCHECK")
        user = config["Config"].get("User", "")
        check(user.split(":")[0] not in ("", "0", "root"), f"image's default user is {user}")
        hc = podman("healthcheck", "run", name, check=False)
        check(
            hc.returncode == 0,
            f"HEALTHCHECK passes in the container (rc {hc.returncode}) {hc.stderr.strip()}",
        )

        stop_started = time.monotonic()
        podman("stop", "--time", "60", name)
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        took = time.monotonic() - stop_started
        check(exit_code == "0", f"SIGTERM drains and exits 0 (exit {exit_code}, {took:.1f} s)")
        return 0
    except AssertionError as exc:
        print(f"image-test failed: {exc}", file=sys.stderr)
        print(podman("logs", "--tail", "60", name, check=False).stderr, file=sys.stderr)
        return 1
    finally:
        podman("rm", "--force", name, check=False)
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "localhost/gpuqueue-worker:dev"))
