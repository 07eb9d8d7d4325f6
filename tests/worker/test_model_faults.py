"""A failure of the device, not of a request: real tiny models whose forward is made to fail as
a broken GPU's does. Every request of the batch fails at once with DeviceError and nothing is
split (after a sticky CUDA error every forward fails: splitting turned the worker into a DLQ
pump); `probe` then tells a dead device from a request that breaks the model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.model import ModelFailure, ModelRunner

ForwardBreaker = Callable[[ModelRunner, Callable[[torch.Tensor], BaseException | None]], list[int]]

OK = ["A man is eating food."]
POISON_WORD = "monkey"

DEVICE_ERRORS: dict[str, Callable[[], BaseException]] = {
    "accelerator-error": lambda: torch.AcceleratorError(
        "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` ..."
    ),
    "illegal-memory-access": lambda: RuntimeError(
        "CUDA error: an illegal memory access was encountered"
    ),
    "cublas": lambda: RuntimeError(
        "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, ...)`"
    ),
    "cudnn": lambda: RuntimeError("cuDNN error: CUDNN_STATUS_MAPPING_ERROR"),
    "wrapped": lambda: _raised_from(RuntimeError("CUDA error: unspecified launch failure")),
}


def _raised_from(cause: BaseException) -> BaseException:
    try:
        raise ValueError("generation failed") from cause
    except ValueError as exc:
        return exc


def poison_id(runner: ModelRunner) -> int:
    ids = runner.encode([POISON_WORD], {}).token_ids[0]
    return ids[1] if runner.task != "generate" else ids[0]  # after [CLS] on BERT


def fail_on_poison(
    runner: ModelRunner, error: Callable[[], BaseException]
) -> Callable[[torch.Tensor], BaseException | None]:
    poison = poison_id(runner)
    return lambda input_ids: error() if bool((input_ids == poison).any()) else None


def run_requests(runner: ModelRunner, requests: list[list[str]], params: Any = None) -> list[Any]:
    items = [(runner.encode(texts, params or {}), params or {}) for texts in requests]
    return runner.run(runner.prepare(items))


@pytest.fixture
def embed_runner(tiny_embed_model: Path) -> ModelRunner:
    return ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")


@pytest.mark.parametrize("kind", sorted(DEVICE_ERRORS))
def test_a_device_fault_fails_the_whole_batch_at_once_without_splitting(
    embed_runner: ModelRunner, break_forward: ForwardBreaker, kind: str
) -> None:
    """Fails on c5118a2: the old runner split the batch down to single requests (forwards
    [3, 1, 1, 1]), answered two of them and reported the third as a ModelError."""
    seen = break_forward(embed_runner, fail_on_poison(embed_runner, DEVICE_ERRORS[kind]))
    outputs = run_requests(embed_runner, [OK, [POISON_WORD], ["A girl."]])
    assert seen == [3]  # one forward: no retry, no split
    assert [type(o) for o in outputs] == [ModelFailure] * 3
    assert {o.type for o in outputs} == {"DeviceError"}
    assert all(o.device_fault and not o.final for o in outputs)
    assert "CUDA error" in outputs[1].message or "cuDNN error" in outputs[1].message


def test_a_request_that_breaks_the_forward_is_still_isolated(
    embed_runner: ModelRunner, break_forward: ForwardBreaker
) -> None:
    """The counterpart: a RuntimeError that is not the device's keeps today's isolation."""
    failing = fail_on_poison(embed_runner, lambda: RuntimeError("index out of range in self"))
    seen = break_forward(embed_runner, failing)
    outputs = run_requests(embed_runner, [OK, [POISON_WORD], ["A girl."]])
    assert seen == [3, 1, 1, 1]
    assert isinstance(outputs[1], ModelFailure) and outputs[1].type == "ModelError"
    assert not outputs[1].device_fault
    assert not isinstance(outputs[0], ModelFailure) and not isinstance(outputs[2], ModelFailure)


def test_a_device_fault_during_an_oom_split_stops_the_split(
    embed_runner: ModelRunner, break_forward: ForwardBreaker
) -> None:
    calls = 0

    def oom_then_dead(input_ids: torch.Tensor) -> BaseException | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return torch.OutOfMemoryError("CUDA out of memory (injected)")
        return torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    seen = break_forward(embed_runner, oom_then_dead)
    outputs = run_requests(embed_runner, [OK] * 4)
    assert seen == [4, 2]  # the OOM halves the batch; the fault in the first half ends it
    assert [o.type for o in outputs] == ["DeviceError"] * 4


def test_out_of_memory_in_cuda_words_is_split_not_a_device_fault(
    embed_runner: ModelRunner, break_forward: ForwardBreaker
) -> None:
    """cudaMalloc outside torch's allocator (a cuBLAS workspace) fails as a plain CUDA error
    "out of memory": memory, so a smaller batch may fit."""

    def oom_above_one(input_ids: torch.Tensor) -> BaseException | None:
        big = input_ids.shape[0] > 1
        return torch.AcceleratorError("CUDA error: out of memory") if big else None

    seen = break_forward(embed_runner, oom_above_one)
    outputs = run_requests(embed_runner, [OK] * 3)
    assert seen == [3, 1, 2, 1, 1]  # halved as for torch's OutOfMemoryError, not one by one
    assert not any(isinstance(o, ModelFailure) for o in outputs)


def test_a_device_fault_in_a_later_group_fails_the_earlier_groups_too(
    tiny_generate_model: Path, break_forward: ForwardBreaker
) -> None:
    """Generate (static batching) runs one group per decoding options; CUDA reports faults
    asynchronously, so outputs computed before the fault in the same batch are not trusted
    either. (Continuous batching: both requests join in one prefill, and it fails them both.)"""
    continuous = ModelRunner.load(str(tiny_generate_model), "generate", device="cpu")
    break_forward(continuous, fail_on_poison(continuous, DEVICE_ERRORS["illegal-memory-access"]))
    both = [
        (continuous.encode(["Hello"], {"max_new_tokens": 2}), {"max_new_tokens": 2}),
        (continuous.encode([POISON_WORD], {"max_new_tokens": 3}), {"max_new_tokens": 3}),
    ]
    assert [getattr(o, "type", "output") for o in continuous.run(continuous.prepare(both))] == [
        "DeviceError", "DeviceError"
    ]
    runner = ModelRunner.load(
        str(tiny_generate_model), "generate", device="cpu", generate_batching="static"
    )
    seen = break_forward(
        runner, fail_on_poison(runner, DEVICE_ERRORS["illegal-memory-access"])
    )
    short: dict[str, Any] = {"max_new_tokens": 2}
    long: dict[str, Any] = {"max_new_tokens": 3}
    items = [
        (runner.encode(["Hello"], short), short),
        (runner.encode([POISON_WORD], long), long),
    ]
    prepared = runner.prepare(items)
    assert len(prepared.groups) == 2
    outputs = runner.run(prepared)
    assert [getattr(o, "type", "output") for o in outputs] == ["DeviceError", "DeviceError"]
    assert seen[-1] == 1 and len(seen) == 3  # group 1: 2 decoding steps; group 2: its first


# ----------------------------------------------------------------------------------- probe


def test_probe_is_true_on_a_working_device(
    embed_runner: ModelRunner, tiny_generate_model: Path
) -> None:
    assert embed_runner.probe() is True
    generator = ModelRunner.load(str(tiny_generate_model), "generate", device="cpu")
    assert generator.probe() is True


def test_probe_tells_a_poison_request_from_a_dead_device(
    embed_runner: ModelRunner, break_forward: ForwardBreaker
) -> None:
    """After a batch where every request failed: the probe's own input runs (True) when only the
    poison breaks the model, and fails (False, without raising) when every forward fails."""
    poisoned = fail_on_poison(embed_runner, lambda: RuntimeError("kernel failed"))
    seen = break_forward(embed_runner, poisoned)
    outputs = run_requests(embed_runner, [[POISON_WORD]])
    assert [o.type for o in outputs] == ["ModelError"]
    assert embed_runner.probe() is True
    assert seen[-1] == 1  # the probe is one input

    def dead(input_ids: torch.Tensor) -> BaseException:
        return torch.AcceleratorError("CUDA error: device-side assert triggered")

    break_forward(embed_runner, dead)
    assert embed_runner.probe() is False
    with pytest.raises(RuntimeError, match="warm-up failed: DeviceError"):
        embed_runner.warm_up()
