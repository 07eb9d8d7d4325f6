"""The device a model runs on: which one, in which dtype, with how many CPU threads, and what a
failure of it looks like (out of memory: split the batch; a CUDA fault: not the request's doing).

The OMP_WAIT_POLICY default that must precede torch's import is set in `worker/model/__init__.py`,
the one place that runs before any module of this package imports torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}
DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu. An explicit cuda without a GPU is an error."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return device
    raise ValueError(f"device must be auto, cuda, cuda:N or cpu, not {device!r}")


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto` = bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU."""
    dtype = (dtype or "auto").strip().lower()
    if dtype == "auto":
        if is_cuda(device):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be auto, float16, bfloat16 or float32, not {dtype!r}")
    return _DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype))


# ------------------------------------------------------------------------------------ threads


def available_cpus() -> int:
    """CPUs this process may really use: affinity, capped by a cgroup CPU quota (Kubernetes limits).

    os.cpu_count() reports the node's cores; a pod limited to 4 CPUs on a 64-core node would
    otherwise start 64 intra-op threads and spend its quota on contention.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "400000 100000"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def configure_threads(device: str) -> int:
    """Pin torch's intra-op threads to the CPUs we may use, unless the user set OMP_NUM_THREADS."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = available_cpus()
    if is_cuda(device):
        # On a GPU the CPU only feeds the device; a few threads suffice and leave cores to I/O.
        n = min(n, 4)
    torch.set_num_threads(n)
    return n


# ------------------------------------------------------------------------- memory, sync


def empty_cache(device: str) -> None:
    """Hand cached blocks back after an OOM, so the halves of a split batch can use them."""
    if is_cuda(device):
        torch.cuda.empty_cache()


def synchronize(device: str) -> None:
    """Wait for queued kernels: CUDA reports a kernel's fault only at the next sync."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def memory_reserved(device: str) -> int | None:
    """Device memory the process holds through torch's caching allocator; None on CPU."""
    if not is_cuda(device):
        return None
    return int(torch.cuda.memory_reserved(device))


# --------------------------------------------------------------------------- what failed

# A RuntimeError with one of these in its text came from the accelerator's runtime or libraries,
# not from the request: after most of them (device-side assert, illegal memory access) the CUDA
# context is poisoned and every later forward fails the same way.
DEVICE_FAULT_MARKERS = (
    "CUDA error",
    "CUDA driver error",
    "CUBLAS_STATUS",
    "CUDNN_STATUS",
    "cuDNN error",
    "CUFFT_",
    "CUSOLVER_STATUS",
    "CUSPARSE_STATUS",
    "device-side assert",
    "illegal memory access",
    "illegal instruction",
    "unspecified launch failure",
    "uncorrectable ECC error",
    "NCCL",
    "HIP error",
)
# Allocation failures outside torch's caching allocator (cuBLAS workspaces, a raw cudaMalloc):
# memory, not a broken device, so a smaller batch may well fit.
# the CPU allocator's too: a request too big to run alone on a CPU worker was a ModelError,
# redelivered (allocating again each time) to the DLQ, instead of halved, then OutOfMemory
_OOM_MARKERS = (
    "CUDA out of memory",
    "CUDA error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "DefaultCPUAllocator: can't allocate memory",
)
_ACCELERATOR_ERROR: type[BaseException] | None = getattr(torch, "AcceleratorError", None)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from / during (a wrapper may hide the CUDA error)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_out_of_memory(exc: BaseException) -> bool:
    """The device ran out of memory: a smaller batch may fit (split and retry)."""
    for link in _chain(exc):
        if isinstance(link, torch.OutOfMemoryError):
            return True
        if isinstance(link, RuntimeError) and any(m in str(link) for m in _OOM_MARKERS):
            return True
    return False


def find_device_fault(exc: BaseException) -> BaseException | None:
    """The accelerator's error in `exc` or its chain (its error type, or its runtime's words in a
    RuntimeError), if any: then the device failed, not the request, and retrying the requests
    one by one cannot help. Out of memory is not a fault."""
    if is_out_of_memory(exc):
        return None
    for link in _chain(exc):
        if _ACCELERATOR_ERROR is not None and isinstance(link, _ACCELERATOR_ERROR):
            return link
        if isinstance(link, RuntimeError) and any(m in str(link) for m in DEVICE_FAULT_MARKERS):
            return link
    return None


def is_device_fault(exc: BaseException) -> bool:
    return find_device_fault(exc) is not None
