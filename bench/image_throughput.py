"""Image throughput, side by side in one run: the worker end to end vs a plain transformers loop,
same model, same images, same torch threads.

    .venv/bin/python bench/image_throughput.py                # < 3 minutes on 2 cores
    .venv/bin/python bench/image_throughput.py --images 400 --device cuda

The model: a ViT-S/16-sized ViTModel (12 layers, 384 wide, 6 heads, 224 px, random weights:
the numbers are a real small model's, no download) for `image-embed`, with its ViTImageProcessor.
The images: JPEG photos-sized (640 x 480, varied content) in moto's S3.

  transformers loop   the image bytes already in memory; per batch: Pillow decode, the
                      processor, the model (`model(pixel_values).pooler_output`): the best of a
                      few batch sizes. No queue, no S3, nothing overlapped.
  worker              the real pipeline (worker.pipeline.Worker, image-embed, default settings
                      but WORKER_MAX_BATCH_IMAGES = the loop's best batch size)
                      through a local SQS (fauxqs) from a pre-filled queue, each request one
                      `{"s3": ...}` image fetched from moto's S3 by the worker: from start to
                      every result sent and its request deleted.
  fetch/decode share  CPU seconds per image of the S3 read + decode + preprocessing, as a share
                      of those plus the model's CPU seconds per image (one thread, measured
                      apart).
Rounds interleave the sides (this machine's cores are shared: a busy neighbour then slows one
round of everything, not one side). `vs_transformers_loop` is the median over the rounds of
worker / loop within a round (the loop at its best batch size run just before the worker);
`vs_transformers_loop_best_of_rounds` compares the best round of each side instead. The
images/s figures are each side's best round.
The last line is one JSON object (also written to docs/results/image-throughput.json).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import bench.local_env  # noqa: E402, F401  (the environment, before torch and boto3 load)

# isort: split
import boto3  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench import results  # noqa: E402
from worker import devsqs  # noqa: E402
from worker.config import WorkerSettings  # noqa: E402
from worker.images.build import build_loader  # noqa: E402
from worker.images.decode import decode_image  # noqa: E402
from worker.model.image_runner import ImageModelRunner  # noqa: E402
from worker.pipeline import Worker  # noqa: E402
from worker.sqs import SqsAdapter  # noqa: E402

REGION = "us-east-1"
BUCKET = "bench-images"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_model(directory: Path) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=224, patch_size=16, hidden_size=384, num_hidden_layers=12,
        num_attention_heads=6, intermediate_size=1536,
    )
    ViTModel(config).eval().save_pretrained(directory)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(directory)
    return directory


def make_images(n: int, seed: int = 0) -> list[bytes]:
    """`n` distinct 640x480 JPEGs (quality 90, ~30-60 KB): gradients, shapes and noise."""
    from PIL import ImageDraw

    rng = random.Random(seed)
    out = []
    for i in range(n):
        image = Image.radial_gradient("L").resize((640, 480)).convert("RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randrange(600), rng.randrange(440)
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            draw.rectangle((x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 150)),
                           fill=colour)
        noise = Image.effect_noise((640, 480), 40 + i % 20).convert("RGB")
        image = Image.blend(image, noise, 0.25)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


CPU_S: dict[str, float] = {}  # the last run's CPU seconds of this process, by side


def transformers_loop(model: Any, processor: Any, images: list[bytes], batch: int) -> float:
    """images/s of decode + processor + model, batch by batch."""
    cpu = time.process_time()
    began = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in chunk]
            pixels = processor(images=decoded, return_tensors="pt")["pixel_values"]
            model(pixel_values=pixels).pooler_output  # noqa: B018
    CPU_S["loop"] = time.process_time() - cpu
    return len(images) / (time.perf_counter() - began)


def run_worker(
    sqs_server: devsqs.LocalServer, runner: ImageModelRunner, n: int, settings: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    sqs = boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    tag = f"{time.time_ns() % 10**9}"
    queue = sqs.create_queue(QueueName=f"bench-img-in-{tag}")["QueueUrl"]
    out = sqs.create_queue(QueueName=f"bench-img-out-{tag}")["QueueUrl"]
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": json.dumps(
                {"id": f"img-{i}", "inputs": {"s3": f"s3://{BUCKET}/photos/{i}.jpg"}})}
            for i in range(start, min(n, start + 10))
        ])
    worker = Worker(
        WorkerSettings(queue_url=queue, result_queue_url=out, http_port=0, **settings),
        runner, SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url,
                                            region_name=REGION),
        region=REGION,
    )
    cpu = time.process_time()
    began = time.perf_counter()
    worker.start()
    deadline = began + 600
    while worker.stats.summary()["deleted"] < n:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"worker answered {worker.stats.summary()} of {n}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - began
    CPU_S["worker"] = time.process_time() - cpu  # the worker's own threads (not the servers')
    summary = worker.summary()
    worker.shutdown(timeout_s=5)
    if summary["succeeded"] != n:
        raise RuntimeError(f"not every request succeeded: {summary}")
    return n / elapsed, summary


def cpu_shares(runner: ImageModelRunner, s3_client: Any, n: int, batch: int) -> dict[str, float]:
    """CPU seconds per image (this process, one image at a time): S3 read + decode +
    preprocessing, and the model at `batch`."""
    from worker.images.policy import ImageSourcePolicy
    from worker.images.s3_fetch import S3ImageFetcher

    fetcher = S3ImageFetcher(
        s3_client, ImageSourcePolicy.from_settings(BUCKET, "", ""), max_bytes=20 << 20
    )
    began = time.process_time()
    fetch_s = decode_s = 0.0
    tensors = []
    for i in range(n):
        t0 = time.process_time()
        data = fetcher.fetch(f"s3://{BUCKET}/photos/{i}.jpg")
        t1 = time.process_time()
        tensors.append(runner.preprocess(decode_image(data, 40_000_000)))
        fetch_s += t1 - t0
        decode_s += time.process_time() - t1
    loading = time.process_time() - began
    began = time.process_time()
    with torch.inference_mode():
        for start in range(0, n, batch):
            runner.model(pixel_values=torch.cat(tensors[start:start + batch]))
    model = time.process_time() - began
    return {
        "fetch_cpu_ms_per_image": round(1000 * fetch_s / n, 2),
        "decode_preprocess_cpu_ms_per_image": round(1000 * decode_s / n, 2),
        "model_cpu_ms_per_image": round(1000 * model / n, 2),
        "fetch_decode_cpu_share": round(loading / (loading + model), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batches", default="8,16", help="the loop's batch sizes to try")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds interleave the two sides; each figure: its best round")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("worker").setLevel(logging.ERROR)  # a last long poll meets the stopped server
    n = args.images
    batches = [int(b) for b in args.batches.split(",")]

    moto = devsqs.start_moto()
    fauxqs = devsqs.start_fauxqs()
    try:
        s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        images = make_images(n)
        for i, data in enumerate(images):
            s3.put_object(Bucket=BUCKET, Key=f"photos/{i}.jpg", Body=data)
        settings: dict[str, Any] = {
            "task": "image-embed", "image_s3_buckets": BUCKET, "model": "",
        }
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = build_model(Path(tmp))
            settings["model"] = str(model_dir)
            worker_settings = WorkerSettings(queue_url="https://x/1/q", result_queue_url=None,
                                             require_reply_to=True, **settings)
            loader = build_loader(
                worker_settings,
                s3_client=boto3.client("s3", endpoint_url=moto.endpoint_url, region_name=REGION,
                                       config=_pool(worker_settings.image_fetch_threads)),
            )
            runner = ImageModelRunner.load(str(model_dir), "image-embed", loader,
                                           device=args.device)
            runner.warm_up()
            threads = torch.get_num_threads()
            log(f"ViT-S/16 (random weights) on {runner.device}, torch threads {threads}, "
                f"{n} images of {sum(map(len, images)) // n // 1024} KB, fetch threads "
                f"{worker_settings.image_fetch_threads}, encoders {worker_settings.encoders}")
            loop_rates: dict[int, float] = {}
            per_round: list[float] = []  # worker / the loop's best batch, in the same round
            round_rates: dict[int, float] = {}
            per_round_cpu: list[float] = []  # images per CPU-second, worker / loop
            worker_rate = 0.0
            summary: dict[str, Any] = {}
            best = batches[0]
            for round_no in range(1, args.rounds + 1):
                # round 1 tries every batch size; the later ones run the loop at the best one
                for batch in batches if round_no == 1 else [best]:
                    rate = transformers_loop(runner.model, runner.processor, images, batch)
                    loop_rates[batch] = max(loop_rates.get(batch, 0.0), rate)
                    round_rates[batch] = rate
                    log(f"  round {round_no}: transformers loop, batch {batch}: {rate:.1f} img/s")
                if round_no == 1:
                    best = max(loop_rates, key=lambda b: loop_rates[b])
                # the worker's batch budget is the loop's best batch size: tuned alike
                settings["max_batch_images"] = settings["max_batch_size"] = best
                loop_cpu = CPU_S["loop"]
                rate, run_summary = run_worker(fauxqs, runner, n, settings)
                per_round.append(rate / round_rates[best])
                per_round_cpu.append(loop_cpu / CPU_S["worker"])
                log(f"  round {round_no}: worker: {rate:.1f} img/s, mean batch "
                    f"{run_summary['mean_batch_size']}, {per_round[-1]:.2f}x the loop's round")
                if rate > worker_rate:
                    worker_rate, summary = rate, run_summary
            best_batch = max(loop_rates, key=lambda b: loop_rates[b])
            shares = cpu_shares(runner, s3, min(n, 64), best_batch)
            runner.close()
    finally:
        fauxqs.stop()
        moto.stop()
    figures = {
        "model": "ViT-S/16 (ViTModel, 224 px, random weights)",
        "task": "image-embed",
        "images": n,
        "device": args.device,
        "torch_threads": threads,
        "worker_images_s": round(worker_rate, 2),
        "transformers_loop_images_s": round(loop_rates[best_batch], 2),
        "transformers_loop_best_batch": best_batch,
        "transformers_loop_by_batch": {str(b): round(r, 2) for b, r in loop_rates.items()},
        # paired: each round's worker run against the loop run just before it, the median of
        # the rounds (a busy neighbour slows both halves of a round alike)
        "vs_transformers_loop": round(statistics.median(per_round), 3),
        "vs_transformers_loop_by_round": [round(r, 3) for r in per_round],
        # images per CPU-second of this process (the SQS and S3 servers' apart), worker / loop:
        # what the worker adds to each image, whatever the neighbours take of the cores
        "vs_transformers_loop_cpu": round(statistics.median(per_round_cpu), 3),
        # the best worker round against the best loop round, whenever each came
        "vs_transformers_loop_best_of_rounds": round(worker_rate / loop_rates[best_batch], 3),
        "worker_mean_batch": summary.get("mean_batch_size"),
        "worker_max_batch_images": settings.get("max_batch_images"),
        **shares,
    }
    results.write("image-throughput", figures)
    print(json.dumps(figures))
    return 0


def _pool(threads: int) -> Any:
    from botocore.config import Config

    return Config(max_pool_connections=max(10, threads))


if __name__ == "__main__":
    sys.exit(main())
