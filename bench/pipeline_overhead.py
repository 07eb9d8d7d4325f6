"""The worker pipeline's own CPU per message, with the model taken out.

    .venv/bin/python bench/pipeline_overhead.py [--messages 3000] [--rounds 3] [--profile]

Runs the real pipeline (worker.pipeline.Worker, default settings) through fauxqs, with the real
runner's encode and prepare (MiniLM's tokenizer) but a `run` that returns a precomputed vector:
what is left is what the worker spends around the model: receiving, parsing, tokenising,
batching, result JSON, sending and deleting. Measured as the worker process's CPU time (the SQS
server's is reported apart), per message and per input, side by side in each round:

  one        one sentence per message (the worker's SQS transport: signed JSON over urllib3)
  boto3      the same through boto3's client (what the transport replaced), for its share
  sixteen    sixteen sentences per message (per-input cost, where the per-message part spreads)

Each figure is the median of the rounds. --profile samples the `one` run (or --profile-run's)
of the last round with py-spy (GIL holders only) and prints where the worker's CPU goes. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from bench import worker_run as wt  # first: it sets the env defaults (OMP, HF offline)
from bench.sentences import load_sentences
from worker import devsqs
from worker.config import bundled_model_dir
from worker.model import ModelRunner, Prepared
from worker.seams import Encoded

PER_MESSAGE_16 = 16


class NoForward:
    """The real runner's encode/prepare; run returns a fixed vector per input (no forward)."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.name = runner.name
        self.device, self.dtype, self.torch_dtype = runner.device, runner.dtype, runner.torch_dtype
        params: dict[str, Any] = {}
        [output] = runner.run(runner.prepare([(runner.encode(["hello"], params), params)]))
        assert isinstance(output, list), output
        [self.vector] = output

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        return self.runner.encode(texts, parameters)

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> Prepared:
        return self.runner.prepare(items)

    def run(self, prepared: Prepared) -> list[Any]:
        return [[self.vector] * len(encoded.token_ids) for encoded, _ in prepared.items]


class Boto3Transport:
    """boto3's client behind the worker's transport interface (for the side-by-side figure)."""

    def __init__(self, endpoint: str, long_poll: bool) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 5 if long_poll else 3},
            read_timeout=35 if long_poll else 5,
            max_pool_connections=32,
        )
        self.client = boto3.client("sqs", endpoint_url=endpoint, region_name=wt.REGION,
                                   config=config)
        self.region = wt.REGION

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        method = re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
        return dict(getattr(self.client, method)(**params))


def boto3_transports(endpoint: str) -> tuple[Any, Any]:
    return Boto3Transport(endpoint, long_poll=False), Boto3Transport(endpoint, long_poll=True)


class Profiler:
    """py-spy attached to this process while one run lasts (GIL holders, raw stacks)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp()) / "pipeline.raw"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(os.getpid()), "--gil", "--rate", "250", "--format",
             "raw", "--output", str(self.path), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(2)  # SIGINT: py-spy writes its file and exits
        self.process.wait(30)


def top_costs(raw: Path, n: int = 25) -> list[tuple[str, float]]:
    """Share of the pipeline threads' GIL samples per function, inclusive."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("worker/pipeline/worker.py" in f and "guarded" in f for f in frames):
            continue
        total += int(count)
        for name in {re.sub(r" \((.*/)?([^/:]+):\d+\)", r" (\2)", f) for f in frames}:
            inclusive[name] += int(count)
    return [(name, round(c / max(total, 1), 3)) for name, c in inclusive.most_common(n)]


def measure(
    server: devsqs.LocalServer,
    runner: ModelRunner,
    *,
    messages: int,
    rounds: int,
    variants: Sequence[str] = ("one", "boto3", "sixteen"),
    profile_out: Path | None = None,
    profile: bool = False,
    profile_run: str = "one",
) -> dict[str, Any]:
    """The figures, measured through `server` (make bench runs this with its own rounds)."""
    stub = NoForward(runner)
    sentences, source = load_sentences(messages)
    grouped = [
        sentences[i : i + PER_MESSAGE_16] for i in range(0, len(sentences), PER_MESSAGE_16)
    ]
    inputs_of: dict[str, tuple[Sequence[Any], Any]] = {
        "one": (sentences, None),
        "boto3": (sentences, boto3_transports),
        "sixteen": (grouped * 4, None),  # a quarter as many messages, four times the inputs
    }
    runs: dict[str, list[wt.WorkerRun]] = {name: [] for name in variants}
    top: list[tuple[str, float]] = []
    for round_no in range(rounds):
        for name in variants:
            inputs, transports = inputs_of[name]
            last = round_no == rounds - 1
            profiler = Profiler() if profile and name == profile_run and last else None
            if profiler is not None:
                profiler.__enter__()
            run = wt.run_worker(
                server, stub, inputs, delay_s=0.0, reference={}, transports=transports  # type: ignore[arg-type]
            )
            if profiler is not None:
                profiler.__exit__()
                top = top_costs(profiler.path)
                if profile_out:
                    shutil.copy(profiler.path, profile_out)
            runs[name].append(run)
            n_inputs = sum(1 if isinstance(i, str) else len(i) for i in inputs)
            print(f"  pipeline {name:8} {run.msgs_s:7.0f} msgs/s, worker "
                  f"{run.worker_cpu_ms_per_msg:.3f} CPU-ms/msg "
                  f"({run.worker_cpu_s * 1000 / n_inputs:.4f} per input), fauxqs "
                  f"{run.server_cpu_s / len(inputs) * 1000:.3f}", file=sys.stderr)

    def median(name: str, value: Any) -> float:
        return round(statistics.median(value(r) for r in runs[name]), 4)

    def spread(name: str, value: Any) -> list[float]:
        """The lowest and highest round: how far one run's figure may land from the median."""
        values = [value(r) for r in runs[name]]
        return [round(min(values), 4), round(max(values), 4)]

    figures: dict[str, Any] = {
        "pipeline_messages": messages,
        "pipeline_rounds": rounds,
        "pipeline_sentences": source,
        "pipeline_cpu_ms_per_msg": median("one", lambda r: r.worker_cpu_ms_per_msg),
        "pipeline_cpu_ms_per_msg_range": spread("one", lambda r: r.worker_cpu_ms_per_msg),
        "pipeline_fauxqs_cpu_ms_per_msg": median(
            "one", lambda r: r.server_cpu_s / r.summary["deleted"] * 1000
        ),
        "pipeline_msgs_s": median("one", lambda r: r.msgs_s),
        "pipeline_sqs_calls_per_message": median("one", lambda r: r.calls_per_message),
    }
    if "sixteen" in runs:
        figures["pipeline_cpu_ms_per_input_16"] = median(
            "sixteen", lambda r: r.worker_cpu_ms_per_msg / PER_MESSAGE_16
        )
        figures["pipeline_cpu_ms_per_input_16_range"] = spread(
            "sixteen", lambda r: r.worker_cpu_ms_per_msg / PER_MESSAGE_16
        )
    if "boto3" in runs:
        figures["pipeline_cpu_ms_per_msg_boto3"] = median(
            "boto3", lambda r: r.worker_cpu_ms_per_msg
        )
        # medians of per-round ratios: a busy neighbour slows both runs of a round alike
        figures["transport_vs_boto3_cpu"] = round(statistics.median(
            a.worker_cpu_ms_per_msg / b.worker_cpu_ms_per_msg
            for a, b in zip(runs["one"], runs["boto3"], strict=True)
        ), 3)
    if top:
        print("\nwhere the pipeline threads hold the GIL (inclusive share of samples):",
              file=sys.stderr)
        for name, share in top:
            print(f"  {share * 100:5.1f}%  {name}", file=sys.stderr)
        figures["pipeline_profile_top"] = top[:15]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-out", type=Path, help="also keep py-spy's raw stacks here")
    parser.add_argument("--profile-run", choices=("one", "sixteen"), default="one",
                        help="which run --profile samples (default: one)")
    args = parser.parse_args()
    runner = ModelRunner.load(bundled_model_dir() or "", "embed", device="cpu")
    server = devsqs.start_fauxqs()
    try:
        figures = measure(
            server, runner, messages=args.messages, rounds=args.rounds,
            profile=args.profile, profile_out=args.profile_out, profile_run=args.profile_run,
        )
    finally:
        server.stop()
    figures["goals"] = {"pipeline_cpu_ms_per_msg": 0.35, "pipeline_cpu_ms_per_input_16": 0.08}
    results.write("pipeline-overhead", figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
