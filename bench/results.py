"""Result files: every bench writes its figures to docs/results/<name>.json with the date, the
commit and the machine they were measured on, so the docs render what a command wrote (and a
reader can rerun it), never figures typed by hand."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def provenance() -> dict[str, Any]:
    """When, at which commit and on what this was measured."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        # "+changes" when code differs from the commit; edits to docs and other result files
        # (written by the bench run before this one) change no measurement
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":(exclude)docs", ":(exclude)*.md"], cwd=ROOT,
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit + ("+changes" if dirty else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "system": platform.system(),
        },
    }


def write(name: str, figures: dict[str, Any], directory: Path = RESULTS) -> Path:
    """docs/results/<name>.json: {"provenance": ..., "figures": ...}."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"provenance": provenance(), "figures": figures}, indent=1) + "\n")
    return path
