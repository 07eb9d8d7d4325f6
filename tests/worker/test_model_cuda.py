"""The runner on a real CUDA device (skipped where there is none; `make gpu-check` runs them):
every task matches the CPU, half precision stays close, and a real device-side assert fails the
whole batch and the probe, as the circuit breaker needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.model import ModelFailure, ModelRunner
from worker.tasks import Task

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["A man is eating food.", "The girl is carrying a baby and a much longer sentence.", "Hi."]

pytestmark = pytest.mark.cuda


def run_each(
    runner: ModelRunner, params: dict[str, Any], texts: list[str] = TEXTS
) -> list[Any]:
    items = [(runner.encode([t], params), params) for t in texts]
    outputs = runner.run(runner.prepare(items))
    assert not any(isinstance(o, ModelFailure) for o in outputs), outputs
    return outputs


@pytest.mark.parametrize(
    ("task", "fixture", "params"),
    [
        ("embed", "tiny_embed_model", {}),
        ("classify", "tiny_classify_model", {}),
        ("generate", "tiny_generate_model", {"max_new_tokens": 6}),
    ],
)
def test_every_task_on_cuda_matches_the_cpu(
    request: pytest.FixtureRequest, task: Task, fixture: str, params: dict[str, Any]
) -> None:
    path = str(request.getfixturevalue(fixture))
    cpu = run_each(ModelRunner.load(path, task, device="cpu"), params)
    gpu_runner = ModelRunner.load(path, task, device="cuda", dtype="float32")
    gpu = run_each(gpu_runner, params)
    assert (gpu_runner.cuda_memory_bytes() or 0) > 0
    if task == "embed":
        assert torch.allclose(torch.tensor(gpu), torch.tensor(cpu), atol=1e-4)
    elif task == "classify":
        assert [o[0]["label"] for o in gpu] == [o[0]["label"] for o in cpu]
        assert [o[0]["score"] for o in gpu] == pytest.approx([o[0]["score"] for o in cpu], abs=1e-4)
    else:
        assert gpu == cpu  # greedy continuation, left-padded batch on the GPU


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_embed_on_cuda_is_close_and_padding_invariant(
    tiny_embed_model: Path, dtype: str
) -> None:
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    cpu_runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")
    cpu = torch.tensor(run_each(cpu_runner, {}))[:, 0]
    runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cuda", dtype=dtype)
    assert runner.dtype == dtype
    batched = torch.tensor(run_each(runner, {}))[:, 0]
    alone = torch.tensor([run_each(runner, {}, [t])[0][0] for t in TEXTS])
    assert torch.nn.functional.cosine_similarity(batched, cpu).min() > 0.999
    assert torch.allclose(batched, alone, atol=2e-2)


DEVICE_ASSERT_CHILD = r"""
import json, sys
from worker.model import ModelRunner
from worker.seams import Encoded

runner = ModelRunner.load(sys.argv[1], "embed", device="cuda")
good = runner.encode(["A man is eating food."], {})
before = runner.run(runner.prepare([(good, {})]))
# a token id past the embedding table: the CUDA gather kernel's device-side assert fires
bad = Encoded([[101, runner.model.config.vocab_size + 1000, 102]])
after = runner.run(runner.prepare([(good, {}), (bad, {}), (good, {})]))
print(json.dumps({
    "before": [getattr(o, "type", "output") for o in before],
    "after": [getattr(o, "type", "output") for o in after],
    "message": getattr(after[1], "message", ""),
    "probe": runner.probe(),
}), flush=True)
"""


def test_a_real_device_side_assert_fails_the_batch_and_the_probe(tiny_embed_model: Path) -> None:
    """In a child process: after a device-side assert the CUDA context is dead for good."""
    done = subprocess.run(
        [sys.executable, "-c", DEVICE_ASSERT_CHILD, str(tiny_embed_model)],
        cwd=REPO, capture_output=True, text=True, timeout=240,  # -c: the repo is on sys.path
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"child printed no result (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(lines[-1])
    assert result["before"] == ["output"]
    assert result["after"] == ["DeviceError"] * 3, result
    assert "CUDA error" in result["message"] or "device-side assert" in result["message"]
    assert result["probe"] is False
