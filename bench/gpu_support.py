"""What the sections of bench/gpu_check.py share: the run's `Check` (device, mode, the models
built so far), vectors from the runner and from sentence-transformers, timing with a device sync,
forward hooks that count rows (or stand in for a full GPU), and a cap on device memory. Torch and
the worker load lazily, so the check records its environment even where they fail to import."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import gpu_models


class Skip(Exception):
    """A section that cannot run here; str() is the note recorded."""


@dataclass
class Check:
    device: str
    quick: bool
    workdir: Path
    _models: dict[str, Path] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def encoder_dir(self, shape: gpu_models.EncoderShape, seed: int) -> Path:
        """A random sentence encoder of `shape`, built once per run."""
        if shape.name not in self._models:
            target = self.workdir / shape.name
            self._models[shape.name] = gpu_models.build_sentence_encoder(
                target, shape, self.device, seed
            )
        return self._models[shape.name]

    def minilm(self) -> Path:
        return self.encoder_dir(gpu_models.TINY_MINILM if self.quick else gpu_models.MINILM_L6, 0)

    def bert_base(self) -> Path:
        return self.encoder_dir(gpu_models.TINY_BERT if self.quick else gpu_models.BERT_BASE, 1)


def free_device_memory() -> None:
    """Hand the last model's device memory back before the next one loads (a no-op on CPU,
    where the collector's pass over transformers' object graphs would only cost time)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def half_dtypes(check: Check, figures: dict[str, Any]) -> list[str]:
    """float16, and bfloat16 where the GPU has it (recorded when it does not). On a CPU only
    bfloat16: float16 kernels there are slow, and the runner's code is the same for both."""
    import torch

    if not check.cuda:
        note(figures, "float16: CPU run (slow kernels; same code path as bfloat16)")
        return ["bfloat16"]
    if torch.cuda.is_bf16_supported():
        return ["float16", "bfloat16"]
    note(figures, "bfloat16: not supported by this GPU")
    return ["float16"]


def note(figures: dict[str, Any], skipped: str) -> None:
    """Record something left out, once."""
    notes = figures.setdefault("skipped", [])
    if skipped not in notes:
        notes.append(skipped)


def closeness(ours: Any, theirs: Any) -> dict[str, float]:
    """Largest absolute difference and smallest cosine between matching rows."""
    import torch

    a, b = torch.as_tensor(ours, dtype=torch.float32), torch.as_tensor(theirs, dtype=torch.float32)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return {"max_abs_diff": float((a - b).abs().max()), "min_cosine": float(cosine.min())}


def mean_pairwise_cosine(vectors: Any) -> float:
    """How alike the vectors of different sentences are: near 1 for random weights, which is why
    closeness here is read with the spread in mind."""
    import torch

    a = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
    n = a.shape[0]
    return float(((a @ a.T).sum() - n) / max(1, n * (n - 1)))


def expect(figures: dict[str, Any], ok: bool, what: str) -> None:
    if not ok:
        figures.setdefault("failed", []).append(what)


# ------------------------------------------------------------------------------ the runner


def runner_vectors(runner: Any, texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
    """The runner's vectors for `texts` (one input per request), in order; sorted by length into
    batches as the pipeline's batcher does."""
    encoded = [runner.encode([t], {}) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: encoded[i].length)
    vectors: list[Any] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        outputs = runner.run(runner.prepare([(encoded[i], {}) for i in chunk]))
        for i, output in zip(chunk, outputs, strict=True):
            if not isinstance(output, list):
                raise RuntimeError(f"request {i} failed: {output}")
            vectors[i] = output[0]
    return vectors


def timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    synchronize(device)
    started = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - started


def sentence_transformer(folder: Path, device: str, dtype: str) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device=device)
    return model.to(getattr(torch, dtype))


def st_vectors(model: Any, texts: Sequence[str]) -> Any:
    return model.encode(list(texts), batch_size=32, convert_to_numpy=True)


# ------------------------------------------------------------------------------ forward hooks


@contextmanager
def forward_rows(model: Any, fail_above: int | None = None) -> Iterator[list[int]]:
    """Record the rows (sequences) of each forward of `model`; with `fail_above`, make a forward
    of more rows raise torch's OutOfMemoryError (the CPU smoke run's stand-in for a full GPU)."""
    import torch

    rows: list[int] = []

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None:
            rows.append(int(input_ids.shape[0]))
            if fail_above is not None and rows[-1] > fail_above:
                raise torch.OutOfMemoryError("out of memory (simulated by gpu_check)")

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield rows
    finally:
        handle.remove()


@contextmanager
def memory_cap(device: str, headroom_bytes: int) -> Iterator[int]:
    """Cap torch's allocator at what it holds now plus `headroom_bytes`; yields the cap."""
    import torch

    free_device_memory()
    index = torch.device(device).index or 0
    total = torch.cuda.get_device_properties(index).total_memory
    cap = torch.cuda.memory_reserved(index) + headroom_bytes
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), index)
    try:
        yield cap
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        free_device_memory()
