"""make gpu-check: the model adapter on a real GPU, one prepared run of under 8 minutes.

    python3 bench/gpu_check.py                       # on a GPU machine (what `make gpu-check` runs)
    python3 bench/gpu_check.py --device cpu --quick  # the smoke run, seconds (a test runs it)
    python3 bench/gpu_check.py --only embed,oom_split --budget-s 200

Needs torch, transformers, tokenizers and sentence-transformers; no network, no hub (every model
is a random-weight one of a real size, built here from a config), no boto3, no Node. Sections, each
time-boxed; one that fails or runs out of time is recorded and the others still run:

    env               GPU, capability, memory, torch / CUDA / cuDNN / transformers versions
    tests             tests/worker/test_model*.py except `slow`: the CUDA-marked tests run here
    embed             the runner in fp32/fp16/bf16 vs sentence-transformers, MiniLM-L6 and
                      BERT-base sizes: sentences/s, closeness to fp32
    oom_split         a batch grown until it overflows capped device memory, through the runner's
                      split; every request answered and right
    generate          a ~204M-parameter Llama: one batch of 32, new tokens/s
    accelerator_duty  the pipeline's duty with the real model, over an in-memory queue

Writes one JSON file: $OUT/gpu-check.json when OUT is set, else build/gpu-check.json (rewritten
after every section, so a run cut short still leaves what it measured). Exit status 1 when a
section failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the worker's CLI sets it

from bench import gpu_sections  # noqa: E402
from bench.gpu_support import Check, Skip, free_device_memory  # noqa: E402

Section = Callable[[Check, float], dict[str, Any]]
#: (name, section, the most seconds it may take): 440 s in all, inside the 8 minutes
SECTIONS: list[tuple[str, Section, float]] = [
    ("env", gpu_sections.env_section, 20),
    ("tests", gpu_sections.tests_section, 150),
    ("embed", gpu_sections.embed_section, 130),
    ("oom_split", gpu_sections.oom_split_section, 60),
    ("generate", gpu_sections.generate_section, 60),
    ("accelerator_duty", gpu_sections.accelerator_duty_section, 20),
]


def default_out() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu-check.json" if out else ROOT / "build" / "gpu-check.json"


def commit() -> dict[str, Any]:
    """The commit checked: git's where the tree is a checkout, else what `make gpu-wheels`
    recorded in .whl/COMMIT (a device machine gets a copy of the tree without .git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return {"commit": head, "dirty": bool(dirty.strip()), "from": "git"}
    except (OSError, subprocess.SubprocessError):
        recorded = ROOT / ".whl" / "COMMIT"
        text = recorded.read_text().strip() if recorded.is_file() else "unknown"
        return {"commit": text, "from": ".whl/COMMIT" if recorded.is_file() else "nowhere"}


def write(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2, default=str) + "\n")
    partial.replace(out)


def run_section(check: Check, name: str, section: Section, budget_s: float) -> dict[str, Any]:
    if budget_s < 3:
        return {"status": "skipped", "note": "the run's time budget was spent"}
    started = time.monotonic()
    try:
        figures = section(check, started + budget_s)
        entry = {"status": "failed" if figures.get("failed") else "ok", **figures}
    except Skip as skip:
        entry = {"status": "skipped", "note": str(skip)}
    except Exception as exc:  # recorded; the next section still runs
        entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc()[-3000:]}
    try:
        free_device_memory()
    except Exception as exc:  # a dead CUDA context fails here too: say so, go on
        entry.setdefault("cleanup_error", f"{type(exc).__name__}: {exc}")
    entry["seconds"] = round(time.monotonic() - started, 1)
    return entry


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if any)")
    parser.add_argument("--quick", action="store_true", help="tiny models, few inputs: seconds")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole run's time box")
    parser.add_argument("--only", default="", help="comma-separated sections (default: all)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = args.out or default_out()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - {name for name, _, _ in SECTIONS}
    if unknown:
        print(f"gpu-check: unknown section(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    report: dict[str, Any] = {
        "check": "gpu-check", "date": datetime.datetime.now(datetime.UTC).isoformat(),
        **commit(), "device": device, "quick": args.quick, "budget_s": args.budget_s,
        "sections": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    check = Check(device=device, quick=args.quick, workdir=workdir)
    try:
        for name, section, cap_s in SECTIONS:
            if only and name not in only and name != "env":
                continue
            left = args.budget_s - (time.monotonic() - started)
            entry = run_section(check, name, section, min(cap_s, left))
            report["sections"][name] = entry
            write(report, out)
            print(f"gpu-check: {name}: {entry['status']} in {entry['seconds']} s"
                  + "".join(f"\n  {line}" for line in entry.get("failed", [])), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["ok"] = all(s["status"] != "failed" for s in report["sections"].values())
    report["seconds"] = round(time.monotonic() - started, 1)
    write(report, out)
    print(f"gpu-check: {'ok' if report['ok'] else 'FAILED'} in {report['seconds']} s -> {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
