"""`make demo`, the README's first command, as a new user runs it: no AWS credentials or region
in the environment (the demo brings its own dummy ones for the local server), a few sentences,
every request answered and nothing left in the DLQ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_without_aws_credentials_in_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "worker.demo", "--messages", "40"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "41 (41 ok, 0 errors" in done.stdout, done.stdout[-2000:]
    assert "input queue left 0, DLQ 0" in done.stdout, done.stdout[-2000:]
