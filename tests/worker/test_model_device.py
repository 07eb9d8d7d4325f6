"""Device, dtype and thread set-up, and which failures are the device's."""

from __future__ import annotations

import os

import pytest
import torch

from worker.model.device import (
    available_cpus,
    configure_threads,
    find_device_fault,
    is_device_fault,
    is_out_of_memory,
    resolve_device,
    resolve_dtype,
)


def test_device_and_dtype_resolution() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    assert resolve_dtype(" BF16 ", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("int8", "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_threads_follow_the_cpus_we_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads("cpu") == before  # an explicit OMP_NUM_THREADS is left alone
    monkeypatch.delenv("OMP_NUM_THREADS")
    try:
        assert configure_threads("cpu") == available_cpus() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "oom", "fault"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, False),
        (torch.AcceleratorError("CUDA error: out of memory"), True, False),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"),
         True, False),
        (torch.AcceleratorError("CUDA error: device-side assert triggered"), False, True),
        (torch.AcceleratorError("CUDA error: misaligned address"), False, True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), False, True),
        (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling cublasGemmEx"), False, True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), False, True),
        (RuntimeError("NCCL error in: ProcessGroupNCCL.cpp, unhandled cuda error"), False, True),
        (_chained(KeyError("past_key_values"), RuntimeError("CUDA error: unspecified launch "
                                                            "failure")), False, True),
        (RuntimeError("index out of range in self"), False, False),
        (RuntimeError("The size of tensor a (7) must match the size of tensor b (8)"),
         False, False),
        (ValueError("bad input: CUDA error"), False, False),  # a RuntimeError's words only
        # the CPU allocator's: was a ModelError, redelivered to the DLQ, allocating each time
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                      "allocate memory: you tried to allocate 80000000000000 bytes."), True, False),
        (_chained(ValueError("x"), torch.OutOfMemoryError("CUDA out of memory")), True, False),
    ],
)
def test_which_failures_are_the_devices(exc: BaseException, oom: bool, fault: bool) -> None:
    assert (is_out_of_memory(exc), is_device_fault(exc)) == (oom, fault)


def test_the_fault_found_is_the_devices_error_not_its_wrapper() -> None:
    cause = RuntimeError("CUDA error: unspecified launch failure")
    assert find_device_fault(_chained(ValueError("generation failed"), cause)) is cause
