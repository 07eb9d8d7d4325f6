"""Chaos suite fixtures: scale knobs, the worker/queue harness, and the one-line JSON summary.

CHAOS_SCALE selects the numbers every test uses:
  (unset)  smoke: only tests marked ``chaos_smoke`` run, small, inside `make test` (< 90 s in all)
  quick    every test, smaller numbers (`make chaos-quick`, < 5 min)
  full     every test at the issue's numbers, the 30-minute soak included (`make chaos`)

Each test records its figures with the ``chaos_report`` fixture; at the end of the session the
suite prints ONE JSON line, {"tests": [{name, load, faults, lost, duplicates, crashes, passed}]},
as the last line of output, and writes it to build/chaos/summary.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chaos.support.harness import (
    REPO_ROOT,
    Queues,
    WorkerProcess,
    WorkerSpec,
    build_tiny_model,
    make_queues,
)

SCALE = os.environ.get("CHAOS_SCALE", "").strip().lower() or "smoke"
if SCALE not in {"smoke", "quick", "full"}:
    raise pytest.UsageError(f"CHAOS_SCALE must be quick or full (or unset), not {SCALE!r}")


def pick(smoke: Any, quick: Any, full: Any) -> Any:
    """The number for the current CHAOS_SCALE."""
    return {"smoke": smoke, "quick": quick, "full": full}[SCALE]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos_smoke: small chaos test that also runs in `make test` (CHAOS_SCALE unset)"
    )
    config.addinivalue_line("markers", "chaos_full_only: runs only with CHAOS_SCALE=full")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        if SCALE == "smoke" and item.get_closest_marker("chaos_smoke") is None:
            item.add_marker(
                pytest.mark.skip(
                    reason="chaos test: runs with `make chaos-quick` / `make chaos` "
                    "(CHAOS_SCALE=quick|full); `make test` runs the chaos_smoke subset"
                )
            )
        if SCALE != "full" and item.get_closest_marker("chaos_full_only") is not None:
            item.add_marker(pytest.mark.skip(reason="runs only in `make chaos` (CHAOS_SCALE=full)"))


# ------------------------------------------------------------------------------------------------
# The summary


@dataclass
class ChaosEntry:
    name: str
    load: str = ""
    faults: Any = None
    lost: int | None = None
    duplicates: int | None = None
    crashes: int | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": SCALE,
            "load": self.load,
            "faults": self.faults,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "crashes": self.crashes,
            "passed": self.passed,
            **({"figures": self.figures} if self.figures else {}),
        }


_ENTRIES: dict[str, ChaosEntry] = {}


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest) -> ChaosEntry:
    """Figures for the one-line summary; `passed` is filled in from the test's outcome."""
    name = request.node.name.removeprefix("test_")
    entry = ChaosEntry(name=name)
    _ENTRIES[request.node.nodeid] = entry
    return entry


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    entry = _ENTRIES.get(item.nodeid)
    if entry is None:
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        entry.passed = report.passed
    elif report.when == "teardown" and report.failed:
        entry.passed = False
    if report.when == "call" and entry.figures:
        print(f"\nCHAOS {entry.name}: {json.dumps(entry.as_dict())}", flush=True)


def _a_whole_run(entries: list[dict[str, Any]]) -> bool:
    """Every chaos suite ran, passed or failed, on the real build: only such a run may replace
    the figures the docs show (`make chaos-broken` runs single files on broken builds, which
    once overwrote them)."""
    suites = {
        p.stem for p in Path(__file__).parent.glob("test_chaos_*.py")
        if "chaos_report" in p.read_text()
    }
    ran = {nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py") for nodeid in _ENTRIES}
    return (
        SCALE != "smoke"
        and not os.environ.get("CHAOS_BREAK")
        and len(entries) == len(_ENTRIES)
        and ran == suites
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    entries = [e.as_dict() for e in _ENTRIES.values() if e.passed is not None]
    if not entries:
        return
    line = json.dumps({"tests": entries}, separators=(",", ":"))
    out = REPO_ROOT / "build" / "chaos"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"summary-{SCALE}.json").write_text(line + "\n")
        if _a_whole_run(entries):  # what the docs show
            sys.path.insert(0, str(REPO_ROOT))
            from bench import results

            results.write(f"chaos-{SCALE}", {"tests": {e["name"]: e for e in entries}})
    except OSError:
        pass
    # The last line of the run: one JSON object with every chaos test's figures.
    print(line, flush=True)


# ------------------------------------------------------------------------------------------------
# Harness fixtures


@pytest.fixture(scope="session")
def tiny_model_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="chaos-tiny-model-"))
    yield build_tiny_model(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def chaos_queues(fauxqs_server: Any) -> Callable[..., Queues]:
    def make(prefix: str, visibility_s: int = 30, max_receive: int = 10) -> Queues:
        return make_queues(fauxqs_server.endpoint_url, prefix, visibility_s, max_receive)

    return make


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers from a spec; every one still running at the end is killed."""
    started: list[WorkerProcess] = []

    def start(spec: WorkerSpec, name: str | None = None) -> WorkerProcess:
        worker = WorkerProcess(spec, name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive:
            worker.kill()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    return directory
