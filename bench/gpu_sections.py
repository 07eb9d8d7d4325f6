"""The sections of bench/gpu_check.py, in the order they run. Each takes the run's `Check` and a
deadline (monotonic seconds) and returns its figures; a failed expectation is listed under
`figures["failed"]`, and `Skip` says why a section did not run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from bench import gpu_models
from bench.gpu_support import (
    Check,
    Skip,
    closeness,
    expect,
    forward_rows,
    free_device_memory,
    half_dtypes,
    mean_pairwise_cosine,
    memory_cap,
    note,
    runner_vectors,
    sentence_transformer,
    st_vectors,
    timed,
)
from bench.sentences import load_sentences

ROOT = gpu_models.ROOT


def env_section(check: Check, deadline: float) -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "cpus": os.cpu_count(),
    }
    try:  # its version without its import (seconds; the embed section pays for that)
        figures["sentence_transformers"] = importlib.metadata.version("sentence-transformers")
    except importlib.metadata.PackageNotFoundError:
        figures["sentence_transformers"] = "not installed"
    if check.cuda:
        props = torch.cuda.get_device_properties(torch.device(check.device))
        figures.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return figures


# ------------------------------------------------------------------------------ tests


def tests_section(check: Check, deadline: float) -> dict[str, Any]:
    """tests/worker/test_model*.py but the `slow` ones (they need MiniLM's real weights), here:
    the CUDA-marked tests run, and the rest checks this machine's torch and transformers."""
    if not check.cuda:
        raise Skip("no CUDA device: the normal suite runs these tests on CPU")
    report = check.workdir / "tests.xml"
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests/worker").glob("test_model*.py"))
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        # tests/conftest.py starts SQS servers with boto3, which this machine does not have
        "--confcutdir", str(ROOT / "tests/worker"), f"--junitxml={report}", *files,
    ]
    # the fixtures' MiniLM: the random-weight one (same files and shape), the package is absent
    env = {**os.environ, "GPUQUEUE_MINILM_DIR": str(check.minilm())}
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=max(10.0, deadline - time.monotonic()),
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or ""
        tail = output.decode(errors="replace") if isinstance(output, bytes) else output
        return {"failed": ["pytest ran out of time"], "output_tail": tail[-2000:]}
    figures = junit_figures(report) if report.is_file() else {}
    figures.update(returncode=done.returncode, summary=done.stdout.strip().splitlines()[-1:])
    expect(figures, done.returncode == 0, f"pytest exited {done.returncode}")
    if done.returncode != 0:
        figures["output_tail"] = (done.stdout + done.stderr)[-3000:]
    return figures


def junit_figures(report: Path) -> dict[str, Any]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    cuda: dict[str, str] = {}
    failures: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "?")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        outcome = "skipped" if skipped is not None else "passed"
        if problem is not None:
            outcome = "failed"
            failures[name] = (problem.get("message") or "")[:300]
        counts[outcome] += 1
        if "on_cuda" in name or "test_model_cuda" in case.get("classname", ""):
            why = f" ({skipped.get('message', '')})" if skipped is not None else ""
            cuda[name] = f"{outcome} in {float(case.get('time', 0)):.1f} s{why}"
    return {**counts, "cuda_tests": cuda, "failures": failures}


# ------------------------------------------------------------------------------ embed


def embed_section(check: Check, deadline: float) -> dict[str, Any]:
    """The runner in each dtype against sentence-transformers on the same random model: sentences
    per second, and closeness to float32 (ours and theirs)."""
    n = 48 if check.quick else 4096
    sentences, source = load_sentences(n)
    sample = sentences[: 16 if check.quick else 256]
    figures: dict[str, Any] = {"sentences": n, "source": source, "batch_size": 32, "models": {}}
    for label, folder in (("minilm_l6", check.minilm), ("bert_base", check.bert_base)):
        if time.monotonic() > deadline - (0 if check.quick else 25):
            note(figures, f"{label}: out of time")
            continue
        figures["models"][label] = embed_one_model(check, folder(), sentences, sample, deadline,
                                                   figures)
    return figures


def embed_one_model(
    check: Check, folder: Path, sentences: list[str], sample: list[str], deadline: float,
    figures: dict[str, Any],
) -> dict[str, Any]:
    from worker.model import ModelRunner

    results: dict[str, Any] = {}
    reference: Any = None
    for dtype in ["float32", *half_dtypes(check, figures)]:
        if time.monotonic() > deadline - (0 if check.quick else 8):
            results[dtype] = {"skipped": "out of time"}
            continue
        runner = ModelRunner.load(str(folder), "embed", device=check.device, dtype=dtype)
        runner.warm_up()
        ours = runner_vectors(runner, sample)
        _, seconds = timed(check.device, partial(runner_vectors, runner, sentences))
        del runner
        free_device_memory()
        model = sentence_transformer(folder, check.device, dtype)
        st_vectors(model, sample[:32])  # warm-up
        theirs = st_vectors(model, sample)
        _, st_seconds = timed(check.device, partial(st_vectors, model, sentences))
        del model
        free_device_memory()
        row: dict[str, Any] = {
            "runner_sentences_s": round(len(sentences) / seconds, 1),
            "sentence_transformers_sentences_s": round(len(sentences) / st_seconds, 1),
            "runner_vs_sentence_transformers": round(st_seconds / seconds, 3),
            "vs_sentence_transformers_same_dtype": closeness(ours, theirs),
        }
        if dtype == "float32":
            reference = ours
            row["mean_pairwise_cosine"] = round(mean_pairwise_cosine(ours), 6)
            expect(figures, row["vs_sentence_transformers_same_dtype"]["max_abs_diff"] <= 1e-4,
                   f"{folder.name} float32: runner differs from sentence-transformers")
        else:
            row["vs_float32"] = closeness(ours, reference)
            expect(figures, row["vs_float32"]["min_cosine"] >= 0.99,
                   f"{folder.name} {dtype}: cosine to float32 below 0.99")
        results[dtype] = row
    return results


# ------------------------------------------------------------------------------ OOM split


def long_texts(runner: Any, n: int) -> list[str]:
    """`n` different texts, each as long as the runner accepts (what fills memory fastest)."""
    from worker.errors import InputTooLong

    pool, _ = load_sentences(n + 40)
    texts = []
    for start in range(n):
        text = pool[start]
        for sentence in pool[start + 1 :]:
            longer = f"{text} {sentence}"
            try:
                runner.encode([longer], {})
            except InputTooLong:
                break
            text = longer
        texts.append(text)
    return texts


def oom_split_section(check: Check, deadline: float) -> dict[str, Any]:
    """A batch grown until it overflows device memory (capped at what the model holds + 512 MiB)
    goes through the runner: split by halves, every request still answered, and right."""
    from worker.model import ModelRunner

    dtype = "float16" if check.cuda else "float32"
    runner = ModelRunner.load(str(check.bert_base()), "embed", device=check.device, dtype=dtype)
    runner.warm_up()
    encoded = [runner.encode([t], {}) for t in long_texts(runner, 8 if check.quick else 64)]
    figures: dict[str, Any] = {"model": "bert_base", "dtype": dtype, "simulated": not check.cuda,
                               "tokens_per_request": min(e.length for e in encoded)}
    cap = memory_cap(check.device, 512 * 2**20) if check.cuda else nullcontext(None)
    with cap as cap_bytes:
        figures["memory_cap_mib"] = None if cap_bytes is None else cap_bytes // 2**20
        batch, rows, outputs = grow_until_split(check, runner, encoded, deadline)
    figures.update(overflowing_batch=batch, forwards=len(rows), first_forwards=rows[:16])
    expect(figures, rows[0] == batch and len(rows) > 1, "the first forward was not split")
    failures = [o for o in outputs if not isinstance(o, list)]
    figures["failed_requests"] = len(failures)
    expect(figures, not failures, f"{len(failures)} requests failed: {failures[:1]}")
    reference = runner_vectors_for(runner, encoded)
    got = [o[0] for o in outputs if isinstance(o, list)]
    want = [reference[i % len(encoded)] for i, o in enumerate(outputs) if isinstance(o, list)]
    figures["vs_small_batches"] = closeness(got, want)
    expect(figures, figures["vs_small_batches"]["min_cosine"] >= 0.999,
           "results after the split differ from small batches")
    return figures


def grow_until_split(
    check: Check, runner: Any, encoded: list[Any], deadline: float
) -> tuple[int, list[int], list[Any]]:
    batch, limit = (4, 64) if check.quick else (16, 16384)
    fail_above = None if check.cuda else 5  # on CPU, a forward of more rows "runs out"
    while batch <= limit and time.monotonic() < deadline - 5:
        items: list[tuple[Any, dict[str, Any]]] = [
            (encoded[i % len(encoded)], {}) for i in range(batch)
        ]
        with forward_rows(runner.model, fail_above) as rows:
            outputs = runner.run(runner.prepare(items))
        if len(rows) > 1:
            return batch, rows, outputs
        batch *= 2
    raise RuntimeError(f"no batch of up to {batch // 2} requests overflowed the memory cap")


def runner_vectors_for(runner: Any, encoded: list[Any]) -> list[Any]:
    outputs: list[Any] = []
    for start in range(0, len(encoded), 4):
        outputs += runner.run(runner.prepare([(e, {}) for e in encoded[start : start + 4]]))
    return [o[0] for o in outputs]


# ------------------------------------------------------------------------------ generate


def generate_section(check: Check, deadline: float) -> dict[str, Any]:
    """A ~204M-parameter Llama: one batch of 32 prompts, greedy; batched vs alone recorded."""
    import torch

    from worker.model import ModelRunner

    folder, n_params = gpu_models.build_decoder(
        check.workdir / "decoder", check.device, seed=2, tiny=check.quick
    )
    dtype = "float32"
    if check.cuda:
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    runner = ModelRunner.load(str(folder), "generate", device=check.device, dtype=dtype)
    runner.warm_up()
    prompts, _ = load_sentences(4 if check.quick else 32)
    params = {"max_new_tokens": 4 if check.quick else 32}
    items = [(runner.encode([p], params), params) for p in prompts]
    with forward_rows(runner.model) as rows:
        outputs, seconds = timed(check.device, lambda: runner.run(runner.prepare(items)))
    figures: dict[str, Any] = {"parameters_m": round(n_params / 1e6, 1), "dtype": dtype}
    failures = [o for o in outputs if not isinstance(o, list)]
    expect(figures, not failures, f"{len(failures)} requests failed: {failures[:1]}")
    steps = len(rows)  # one forward per new token (the first over the whole prompt)
    alone = [runner.run(runner.prepare([item]))[0] for item in items[:4]]
    figures.update(
        batch=len(items), max_new_tokens=params["max_new_tokens"], forwards=steps,
        seconds=round(seconds, 3), new_tokens_s=round(len(items) * steps / seconds, 1),
        batched_equals_alone=f"{sum(a == b for a, b in zip(alone, outputs, strict=False))}/4",
    )
    return figures


# ------------------------------------------------------------------------------ duty


def accelerator_duty_section(check: Check, deadline: float) -> dict[str, Any]:
    """The pipeline's accelerator duty (busy / wall) with the real model on this device: the real
    Worker over an in-memory queue (bench/memory_queue.py; no SQS server here), MiniLM-L6 in
    float16 on CUDA, from a pre-filled queue (bench/accelerator_duty.py measures the same with
    a stand-in forward through fauxqs on CPU)."""
    from bench.accelerator_duty import duty_in_memory
    from worker.model import ModelRunner

    dtype = "float16" if check.cuda else "float32"
    runner = ModelRunner.load(str(check.minilm()), "embed", device=check.device, dtype=dtype)
    runner.warm_up()
    n = 1_000 if check.quick else 20_000
    sentences, _ = load_sentences(n)
    left = max(10.0, deadline - time.monotonic() - 5)
    figures = duty_in_memory(runner, sentences, timeout_s=left)
    figures["dtype"] = dtype
    expect(figures, figures["answered"] == n, f"only {figures['answered']} of {n} answered")
    free_device_memory()
    return figures
