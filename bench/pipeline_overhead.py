"""The worker pipeline's own cost per message, with the model taken out.

    .venv/bin/python bench/pipeline_overhead.py [--messages 3000] [--rounds 3]

Runs the real pipeline (worker.pipeline.Worker, default settings) through fauxqs, with the real
runner's encode/prepare but a `run` that returns a precomputed MiniLM vector. What is left is
what the worker spends around the model: receiving, parsing, tokenising, result JSON, sending and
deleting. Printed as CPU milliseconds per message (the worker process and the SQS server) and as
the pipeline's ceiling in messages/s. Each round also runs, side by side, the pipeline with
result bodies written by json.dumps instead of orjson (`stdlib_json`), to size that choice. (Turning
botocore's client-side parameter validation off was measured too and left out: ~17 us of CPU per
message, below this benchmark's noise.) The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import worker_throughput as wt  # first: it sets the env defaults (OMP, HF offline)
from bench.sentences import load_sentences
from worker import devsqs
from worker.config import bundled_model_dir
from worker.contract import result as contract_result
from worker.model import ModelRunner, Prepared
from worker.seams import Encoded


class NoForward:
    """The real runner's encode/prepare; run returns a fixed vector (no forward pass)."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.name = runner.name
        self.device, self.dtype, self.torch_dtype = runner.device, runner.dtype, runner.torch_dtype
        params: dict[str, Any] = {}
        self.vector = runner.run(runner.prepare([(runner.encode(["hello"], params), params)]))[0]

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        return self.runner.encode(texts, parameters)

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> Prepared:
        return self.runner.prepare(items)

    def run(self, prepared: Prepared) -> list[Any]:
        return [self.vector for _ in prepared.items]


FAST_RESULT_JSON = contract_result.result_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runner = ModelRunner.load(bundled_model_dir() or "", "embed", device="cpu")
    stub = NoForward(runner)
    sentences, source = load_sentences(args.messages)
    results: dict[str, list[wt.WorkerRun]] = {"default": [], "stdlib_json": []}
    server = devsqs.start_fauxqs()
    try:
        for _ in range(args.rounds):
            for variant in results:
                contract_result.result_json = (  # type: ignore[assignment]
                    contract_result.stdlib_result_json
                    if variant == "stdlib_json"
                    else FAST_RESULT_JSON
                )
                run = wt.run_worker(
                    server, stub, sentences, delay_s=0.0, reference={}  # type: ignore[arg-type]
                )
                results[variant].append(run)
                print(f"{variant:20} {run.msgs_s:7.0f} msgs/s, "
                      f"{1000 / run.msgs_per_cpu_s:.3f} CPU-ms/msg (fauxqs "
                      f"{run.server_cpu_s / args.messages * 1000:.3f})", file=sys.stderr)
    finally:
        server.stop()
    figures: dict[str, Any] = {"messages": args.messages, "sentences": source}
    for variant, runs in results.items():
        figures[f"{variant}_cpu_ms_per_msg"] = round(
            statistics.median(1000 / r.msgs_per_cpu_s for r in runs), 3
        )
        figures[f"{variant}_msgs_s"] = round(max(r.msgs_s for r in runs), 1)
        figures[f"{variant}_fauxqs_cpu_ms_per_msg"] = round(
            statistics.median(r.server_cpu_s / args.messages * 1000 for r in runs), 3
        )
    # medians of per-round differences: a busy neighbour slows both runs of a round alike
    figures["orjson_saves_cpu_ms_per_msg"] = round(
        statistics.median(
            1000 / slow.msgs_per_cpu_s - 1000 / fast.msgs_per_cpu_s
            for fast, slow in zip(results["default"], results["stdlib_json"], strict=True)
        ),
        3,
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
