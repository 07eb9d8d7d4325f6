"""The embedded local AWS endpoints, started and stopped by the demo, the tests and the benchmarks.

`fauxqs` (npm, pinned in package.json) is the default SQS server: it keeps thousands of messages a
second flat to tens of thousands deep, so a benchmark measures the worker, not the emulator.
moto's server is O(queue depth) per call; it serves S3/STS/Secrets Manager, and SQS for small
correctness tests (run against both, so an emulator quirk cannot hide a bug).

    python -m worker.devsqs            # fauxqs on a free loopback port, until Ctrl-C
    python -m worker.devsqs --moto     # moto's server instead

Any SQS endpoint works through AWS_ENDPOINT_URL (LocalStack, ElasticMQ, real SQS): this module is
only the embedded default.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 30.0
_JS_LAUNCHER = Path(__file__).with_name("devsqs.js")


class DevServerError(RuntimeError):
    """A local server could not be started; the message says what to do."""


@dataclass
class LocalServer:
    """A server process on loopback, owned by whoever started it."""

    kind: str
    endpoint_url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        """User+system CPU seconds the server has used so far (Linux /proc), for bench reports."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return float("nan")
        ticks = os.sysconf("SC_CLK_TCK")
        # fields[11], fields[12] are utime, stime (1-based fields 14, 15 of /proc/PID/stat)
        return (int(fields[11]) + int(fields[12])) / ticks


def find_fauxqs_module() -> Path:
    """Locate fauxqs' entry module: GPUQUEUE_NODE_MODULES, the repo root, or the cwd."""
    candidates = []
    if env := os.environ.get("GPUQUEUE_NODE_MODULES"):
        candidates.append(Path(env))
    candidates += [
        Path(__file__).resolve().parent.parent / "node_modules",
        Path.cwd() / "node_modules",
    ]
    for node_modules in candidates:
        module = node_modules / "fauxqs" / "dist" / "app.js"
        if module.is_file():
            return module
    raise DevServerError(
        "fauxqs is not installed: run `npm ci` in the repository root (package.json pins it), "
        "or set GPUQUEUE_NODE_MODULES to a node_modules folder holding it"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http_ok(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevServerError(f"{what} exited with code {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    process.kill()
    raise DevServerError(f"{what} did not answer {url} within {START_TIMEOUT_S:.0f}s")


def start_fauxqs(port: int = 0) -> LocalServer:
    """Start fauxqs bound to 127.0.0.1; `port=0` picks a free port."""
    node = shutil.which("node")
    if node is None:
        raise DevServerError("node is not on PATH: fauxqs needs Node.js 20 or newer")
    env = {
        **os.environ,
        "FAUXQS_MODULE": find_fauxqs_module().as_uri(),
        # The server exits when this process's end of its stdin closes (see devsqs.js).
        "FAUXQS_EXIT_WITH_PARENT": "1",
    }
    process = subprocess.Popen(
        [node, str(_JS_LAUNCHER), str(port)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=5)
        raise DevServerError(f"fauxqs exited with code {process.returncode} during start-up")
    bound = int(json.loads(line)["port"])
    endpoint = f"http://127.0.0.1:{bound}"
    _wait_http_ok(f"{endpoint}/health", process, "fauxqs")
    return LocalServer("fauxqs", endpoint, process)


def start_moto(port: int = 0) -> LocalServer:
    """Start moto's server (SQS, S3, STS, Secrets Manager, CloudWatch, ...) bound to 127.0.0.1,
    with ReceiveMessage made atomic (worker.devmoto: moto can hand one message to two receives)."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.devmoto", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http_ok(f"{endpoint}/moto-api/", process, "moto server")
    return LocalServer("moto", endpoint, process)


@contextmanager
def running(kind: str = "fauxqs") -> Iterator[LocalServer]:
    """Context manager: a local server for the block, stopped on the way out."""
    server = start_fauxqs() if kind == "fauxqs" else start_moto()
    try:
        yield server
    finally:
        server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.devsqs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--moto", action="store_true", help="start moto's server instead of fauxqs")
    parser.add_argument(
        "--port", type=int, default=0, help="port to bind on 127.0.0.1 (default: free)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        server = start_moto(args.port) if args.moto else start_fauxqs(args.port)
    except DevServerError as exc:
        print(f"devsqs: {exc}", file=sys.stderr)
        return 1
    # the handler only passes the signal on: stop() waiting inside it, while this frame's
    # wait() holds Popen's lock, never returned (the server left a zombie, this hung). Set
    # before the line is printed: a SIGTERM sent on reading it must find the handler there.
    signal.signal(signal.SIGTERM, lambda *_: server.process.send_signal(signal.SIGTERM))
    print(f"export AWS_ENDPOINT_URL={server.endpoint_url}", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
