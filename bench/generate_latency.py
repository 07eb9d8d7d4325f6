"""Generate latency: do short answers wait for long ones? Static batching (generate() per batch,
WORKER_GENERATE_BATCHING=static) against continuous batching (one decode session, rows leave at
their own end and join between steps), side by side in interleaved rounds.

Measured through the worker's model layer (`ModelRunner`: encode, prepare, run / open_session)
with the pipeline's batch former (`worker.batching.Batcher` with the worker's default limits),
not through SQS: every request arrives at t=0 and its latency is when its result is ready to be
handed to the writers. The static side runs the batches one after another as the executor does
(each request answered when its batch's run returns); the continuous side drives a session as
the executor's continuous loop does (batches join while the session has room for
max_batch_size sequences, one decode step at a time).

The decoder is a random Llama built from a config (a few layers, hidden 256: a step costs
something on a CPU), its EOS switched off so every request generates exactly max_new_tokens and
both sides produce the same tokens. The requests: 48, 3/4 with max_new_tokens 8 and 1/4 with
256, shuffled with a fixed seed.

With --hf-manager (on by default) it also times transformers' own continuous-batching manager
(`init_continuous_batching`, per-request max_new_tokens) over the same requests once, after
one warm-up request timed apart (its start-up: sizing the cache, warming up).

Prints one JSON line last, with `short_p95_vs_static` and `tokens_s_vs_static`, and writes
docs/results/generate-latency.json.

    .venv/bin/python bench/generate_latency.py [--rounds 3] [--requests 48] [--no-hf-manager]
    (or python -m bench.generate_latency)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script too

SHORT, LONG = 8, 256
GOAL_SHORT_P95 = 0.3
GOAL_TOKENS_S = 1.0


def build_model(folder: Path, hidden: int, layers: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from bench.sentences import generated_sentences

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(generated_sentences(2000), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", model_max_length=1024,
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64), max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = None  # every request runs to its max_new_tokens
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def workload(n: int, seed: int) -> list[tuple[str, int]]:
    from bench.sentences import generated_sentences

    rng = random.Random(seed)
    texts = generated_sentences(n, seed=seed)
    lengths = [SHORT] * (n - n // 4) + [LONG] * (n // 4)
    rng.shuffle(lengths)
    return list(zip(texts, lengths, strict=True))


def batches(runner: Any, encoded: list[Any], max_batch_size: int, max_batch_tokens: int) -> Any:
    """The pipeline's batch former over requests that all arrived at t=0."""
    from worker.batching import Batcher, BatchLimits

    batcher: Any = Batcher(BatchLimits(max_batch_size, max_batch_tokens, 0.0))
    for index, (enc, _) in enumerate(encoded):
        batcher.add(index, group="generate", rows=enc.rows, length=enc.length, now=0.0)
    while len(batcher):
        taken = batcher.take(0.0, force=True)
        if taken:
            yield taken


def encode_all(runner: Any, requests: list[tuple[str, int]]) -> list[tuple[Any, dict[str, int]]]:
    """Each request tokenised with its own max_new_tokens, as the worker's encoders do."""
    return [
        (runner.encode([text], {"max_new_tokens": n}), {"max_new_tokens": n})
        for text, n in requests
    ]


def run_static(
    runner: Any, requests: list[tuple[str, int]], limits: tuple[int, int]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    encoded = encode_all(runner, requests)
    done: dict[int, float] = {}
    for batch in batches(runner, encoded, *limits):
        outputs = runner.run_static(runner.prepare([encoded[i] for i in batch]))
        end = time.perf_counter() - t0
        assert all(isinstance(o, list) for o in outputs), outputs
        done.update({i: end for i in batch})
    return {"latency": done, "makespan": time.perf_counter() - t0}


def run_continuous(
    runner: Any, requests: list[tuple[str, int]], limits: tuple[int, int]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    encoded = encode_all(runner, requests)
    session = runner.open_session()
    assert session is not None
    done: dict[int, float] = {}
    pending = list(batches(runner, encoded, *limits))
    while pending or session.active:
        answered = []
        if pending and session.rows < limits[0]:
            batch = pending.pop(0)
            answered += session.add(runner.prepare([encoded[i] for i in batch]), batch)
        if session.active:
            answered += session.step()
        end = time.perf_counter() - t0
        for index, output in answered:
            assert isinstance(output, list), output
            done[index] = end
    return {"latency": done, "makespan": time.perf_counter() - t0}


def run_hf_manager(model: Any, tokenizer: Any, requests: list[tuple[str, int]]) -> dict[str, Any]:
    """transformers' continuous-batching manager over the same requests (per-request
    max_new_tokens), latencies from each result's arrival. Its first request (the manager sizes
    its cache and warms up then: tens of seconds on a CPU) is timed apart, as `warmup_s`."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=LONG, eos_token_id=None,
                              pad_token_id=tokenizer.pad_token_id)
    manager = model.init_continuous_batching(generation_config=config)
    manager.start()
    try:
        began = time.perf_counter()
        manager.add_request(tokenizer.encode("warm up"), max_new_tokens=2)
        manager.get_result(timeout=600)
        warmup_s = time.perf_counter() - began
        t0 = time.perf_counter()
        ids = {}
        for index, (text, n) in enumerate(requests):
            rid = manager.add_request(tokenizer.encode(text), max_new_tokens=n)
            ids[rid] = index
        done: dict[int, float] = {}
        while len(done) < len(requests):
            result = manager.get_result(timeout=600)
            if result is None:
                break
            if result.is_finished():
                done[ids[result.request_id]] = time.perf_counter() - t0
        return {"latency": done, "makespan": time.perf_counter() - t0, "warmup_s": warmup_s}
    finally:
        manager.stop(block=True)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def summarise(runs: list[dict[str, Any]], requests: list[tuple[str, int]]) -> dict[str, float]:
    short = [r["latency"][i] for r in runs for i, (_, n) in enumerate(requests) if n == SHORT]
    long = [r["latency"][i] for r in runs for i, (_, n) in enumerate(requests) if n == LONG]
    tokens = sum(n for _, n in requests) * len(runs)
    return {
        "short_p50_s": round(statistics.median(short), 4),
        "short_p95_s": round(p95(short), 4),
        "long_p95_s": round(p95(long), 4),
        "makespan_s": round(statistics.median(r["makespan"] for r in runs), 4),
        "tokens_s": round(tokens / sum(r["makespan"] for r in runs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-hf-manager", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from bench import results
    from worker.model import ModelRunner

    requests = workload(args.requests, seed=11)
    limits = (args.max_batch_size, args.max_batch_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "decoder"
        build_model(folder, args.hidden, args.layers)
        runner = ModelRunner.load(str(folder), "generate", device=args.device, dtype="float32")
        assert runner.continuous
        run_continuous(runner, requests[:8], limits)  # warm-up, both paths
        run_static(runner, requests[:8], limits)
        static_runs: list[dict[str, Any]] = []
        continuous_runs: list[dict[str, Any]] = []
        for round_ in range(args.rounds):  # interleaved, the order alternating
            sides = [("static", run_static), ("continuous", run_continuous)]
            for name, fn in sides if round_ % 2 == 0 else sides[::-1]:
                run = fn(runner, requests, limits)
                (static_runs if name == "static" else continuous_runs).append(run)
                print(f"round {round_} {name}: {run['makespan']:.2f} s", flush=True)
        manager: dict[str, float] | None = None
        if not args.no_hf_manager:
            try:
                run = run_hf_manager(runner.model, runner.tokenizer, requests)
                manager = summarise([run], requests)
                manager["warmup_s"] = round(run["warmup_s"], 2)
            except Exception as exc:  # an API that moved: the comparison is what is lost
                print(f"transformers manager not measured: {type(exc).__name__}: {exc}")
    static, continuous = summarise(static_runs, requests), summarise(continuous_runs, requests)
    figures: dict[str, Any] = {
        "short_p95_vs_static": round(continuous["short_p95_s"] / static["short_p95_s"], 3),
        "tokens_s_vs_static": round(continuous["tokens_s"] / static["tokens_s"], 3),
        "static": static,
        "continuous": continuous,
        "hf_manager": manager,
        "hf_manager_tokens_s_vs_static": (
            round(manager["tokens_s"] / static["tokens_s"], 3) if manager else None
        ),
        "requests": args.requests,
        "short_requests": sum(1 for _, n in requests if n == SHORT),
        "short_max_new_tokens": SHORT,
        "long_max_new_tokens": LONG,
        "rounds": args.rounds,
        "model": f"random Llama, hidden {args.hidden}, {args.layers} layers",
        "device": args.device,
        "max_batch_size": args.max_batch_size,
        "goal_short_p95_vs_static": GOAL_SHORT_P95,
        "goal_tokens_s_vs_static": GOAL_TOKENS_S,
    }
    figures["goals_met"] = (
        figures["short_p95_vs_static"] <= GOAL_SHORT_P95
        and figures["tokens_s_vs_static"] >= GOAL_TOKENS_S
    )
    if not args.no_write:
        results.write("generate-latency", figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
