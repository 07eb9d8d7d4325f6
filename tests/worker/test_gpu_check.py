"""`make gpu-check` cannot rot between GPU sessions: its CPU smoke run (tiny models, a simulated
full GPU) runs here, every section that can run on a CPU passes, and the JSON has its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_cpu_smoke_run_passes_and_reports(gpu_check: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    report: dict[str, Any] = json.loads(out.read_text())
    sections = report["sections"]
    assert report["ok"] is True and report["device"] == "cpu" and report["quick"] is True
    assert report["commit"] and report["date"] and sections["env"]["torch"]
    assert {name: s["status"] for name, s in sections.items()} == {
        "env": "ok", "tests": "skipped", "embed": "ok", "oom_split": "ok", "generate": "ok",
        "accelerator_duty": "ok",
    }
    for model in ("minilm_l6", "bert_base"):
        rows = sections["embed"]["models"][model]
        assert set(rows) == {"float32", "bfloat16"}  # float16 only on a GPU
        assert rows["float32"]["vs_sentence_transformers_same_dtype"]["max_abs_diff"] < 1e-4
        assert rows["bfloat16"]["vs_float32"]["min_cosine"] > 0.99
        assert all(row["runner_sentences_s"] > 0 for row in rows.values())
    oom = sections["oom_split"]
    assert oom["simulated"] and oom["first_forwards"][0] == oom["overflowing_batch"]
    assert oom["forwards"] > 1 and oom["failed_requests"] == 0
    assert sections["generate"]["new_tokens_s"] > 0
    duty = sections["accelerator_duty"]
    assert duty["answered"] == duty["messages"] and 0 < duty["duty"] <= 1


def test_a_section_that_raises_is_recorded_and_the_run_goes_on(
    gpu_check: ModuleType, tmp_path: Path
) -> None:
    from bench.gpu_support import Check, Skip

    check = Check(device="cpu", quick=True, workdir=tmp_path)

    def broken(check: Check, deadline: float) -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    def skipped(check: Check, deadline: float) -> dict[str, Any]:
        raise Skip("not here")

    failed = gpu_check.run_section(check, "broken", broken, 10)
    assert failed["status"] == "failed" and "ZeroDivisionError" in failed["error"]
    assert gpu_check.run_section(check, "skipped", skipped, 10)["note"] == "not here"
    assert gpu_check.run_section(check, "late", broken, 1)["status"] == "skipped"  # no time
    assert gpu_check.main(["--only", "nonsense", "--out", str(tmp_path / "x.json")]) == 2
