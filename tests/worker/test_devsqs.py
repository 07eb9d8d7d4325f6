"""The embedded SQS server's lifecycle: it must not outlive whoever started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from worker_test_helpers import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]

# A launcher that starts fauxqs, prints the server's pid and then waits to be killed.
LAUNCHER = """
import time
from worker.devsqs import start_fauxqs
server = start_fauxqs()
print(server.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is dead.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_fauxqs_exits_when_its_launcher_dies(sig: signal.Signals) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert launcher.stdout is not None
    server_pid = int(launcher.stdout.readline())
    try:
        assert _alive(server_pid)
        launcher.send_signal(sig)  # no handler: the launcher dies without stopping the server
        launcher.wait(timeout=10)
        wait_for(lambda: not _alive(server_pid), 10, "fauxqs to exit after its launcher died")
    finally:
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_the_devsqs_command_stops_its_server_and_exits_on_sigterm() -> None:
    """`python -m worker.devsqs` stopped the server from inside its SIGTERM handler while its
    own wait() held Popen's lock: the server stayed a zombie and the command never exited."""
    command = subprocess.Popen(
        [sys.executable, "-m", "worker.devsqs"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert command.stdout is not None
    try:
        assert command.stdout.readline().startswith("export AWS_ENDPOINT_URL=")
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=15) == 0
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
