"""image-embed and image-classify end to end through the real worker: a local SQS (fauxqs),
images in moto's S3, on a local HTTP server and inline in base64; good and bad inputs in one
run, every bad one an error result naming what is wrong, none of them given to the model."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from image_helpers import IMAGE_LABELS, image_bytes, png_claiming
from worker_test_helpers import (
    ResultReader,
    counts,
    make_queues,
    send_bodies,
    start_worker,
    wait_for,
)

from worker.config import WorkerSettings
from worker.images.build import build_loader
from worker.metrics import ImageMetrics, Metrics
from worker.model.image_runner import ImageModelRunner
from worker.pipeline import Worker

REGION = "us-east-1"


def body(inputs: Any, **fields: Any) -> str:
    return json.dumps({"inputs": inputs, **fields})


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def bucket(moto_server: Any) -> tuple[Any, str]:
    client = boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    name = "gq-images"
    client.create_bucket(Bucket=name)
    for i in range(4):
        client.put_object(Bucket=name, Key=f"photos/{i}.jpg", Body=image_bytes("JPEG", seed=i))
    client.put_object(Bucket=name, Key="photos/truncated.png", Body=image_bytes()[:60])
    client.create_bucket(Bucket="gq-private")
    client.put_object(Bucket="gq-private", Key="x.png", Body=image_bytes())
    return client, name


def image_worker(
    model: Path, task: str, fauxqs: Any, sqs: Any, bucket: tuple[Any, str], server: Any,
    workers: list[Worker], metrics: Metrics,
) -> tuple[Worker, ImageModelRunner, Any]:
    queues = make_queues(sqs)
    settings = {
        "task": task, "model": str(model), "queue_url": queues.input,
        "result_queue_url": queues.results, "image_s3_buckets": bucket[1],
        "image_url_allow": server.origin, "image_allow_networks": "127.0.0.0/8",
        "image_fetch_threads": 4, "image_max_bytes": 50_000,
    }
    loader = build_loader(
        WorkerSettings(**settings), stats=ImageMetrics(metrics), s3_client=bucket[0]
    )
    runner = ImageModelRunner.load(str(model), task, loader, device="cpu")  # type: ignore[arg-type]
    worker = start_worker(
        fauxqs.endpoint_url, queues, runner, workers, metrics=metrics,
        **{k: v for k, v in settings.items() if k not in ("queue_url", "result_queue_url")},
    )
    return worker, runner, queues


def test_image_classify_from_s3_url_and_base64_with_every_bad_input_answered(
    tiny_vit_classifier: Path, fauxqs_server: Any, bucket: tuple[Any, str], image_server: Any,
    running_workers: list[Worker], count_forwards: Any,
) -> None:
    sqs = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url, region_name=REGION)
    image_server.files["/img/a.png"] = image_bytes("PNG", seed=7)
    image_server.files["/img/b.webp"] = image_bytes("WEBP", seed=8)
    metrics = Metrics()
    # the runner is built before the worker starts: count its forwards from the first batch
    worker, runner, queues = image_worker(
        tiny_vit_classifier, "image-classify", fauxqs_server, sqs, bucket, image_server,
        running_workers, metrics,
    )
    seen = count_forwards(runner)
    good = {
        "s3": body([{"s3": "s3://gq-images/photos/0.jpg"}, {"s3": "s3://gq-images/photos/1.jpg"}],
                   id="s3"),
        "url": body({"url": image_server.url("/img/a.png")}, id="url"),
        "redirected": body(
            {"url": image_server.url(f"/redirect?to={image_server.url('/img/b.webp')}")},
            id="redirected"),
        "base64": body([b64(image_bytes("GIF", seed=9))], id="base64", parameters={"top_k": 2}),
        "mixed": body([{"s3": "s3://gq-images/photos/2.jpg"},
                       {"url": image_server.url("/img/a.png")}, b64(image_bytes("BMP"))],
                      id="mixed"),
    }
    bad = {
        "truncated-s3": ("InvalidImage", body({"s3": "s3://gq-images/photos/truncated.png"})),
        "no-such-key": ("ImageFetchFailed", body({"s3": "s3://gq-images/photos/missing.jpg"})),
        "bucket-refused": ("ImageSourceNotAllowed", body({"s3": "s3://gq-private/x.png"})),
        "url-404": ("ImageFetchFailed", body({"url": image_server.url("/img/missing.png")})),
        "host-refused": ("ImageSourceNotAllowed", body({"url": "https://example.com/a.png"})),
        "bad-base64": ("InvalidImage", body({"base64": "not base64!!"})),
        "wrong-magic": ("InvalidImage", body(b64(b"GIF87a but not really an image at all"))),
        "bomb": ("ImageTooLarge", body(b64(png_claiming(60_000, 60_000)))),
        "too-big": ("ImageTooLarge", body(b64(b"\x89PNG" + bytes(60_000)))),
        "text-input": ("InvalidRequest", body("a photo of a cat")),
        "bad-top-k": ("InvalidParameters", body(b64(image_bytes()), parameters={"top_k": 0})),
        # one bad image fails its whole request: its good image is never run either
        "one-bad-of-two": ("InvalidImage", body([b64(image_bytes()), {"base64": "@@@@"}])),
    }
    bodies = [json.dumps({**json.loads(b), "id": k}) for k, b in good.items()]
    bodies += [json.dumps({**json.loads(b), "id": k}) for k, (_, b) in bad.items()]
    send_bodies(sqs, queues.input, bodies)
    reader = ResultReader(sqs, queues.results)
    results = {r["id"]: r for r in reader.wait_for(len(bodies), timeout=60).values()}

    for key in good:
        assert results[key]["status"] == "ok", results[key]
    assert len(results["s3"]["outputs"]) == 2
    assert len(results["mixed"]["outputs"]) == 3
    for key in ("s3", "url", "redirected", "mixed"):
        for out in results[key]["outputs"]:
            assert out["label"] in IMAGE_LABELS.values() and 0 < out["score"] <= 1
    [top2] = results["base64"]["outputs"]
    assert len(top2) == 2 and top2[0]["score"] >= top2[1]["score"]
    # the same image gives the same answer whichever way it came
    assert results["url"]["outputs"][0] == results["mixed"]["outputs"][1]

    for key, (error_type, _) in bad.items():
        result = results[key]
        assert result["status"] == "error", (key, result)
        assert result["error"]["type"] == error_type, (key, result["error"])
        assert result["error"]["message"], key
    assert "input 1" in results["one-bad-of-two"]["error"]["message"]
    assert "gq-private" in results["bucket-refused"]["error"]["message"]
    assert "WORKER_IMAGE_MAX_PIXELS" in results["bomb"]["error"]["message"]
    assert "404" in results["url-404"]["error"]["message"]
    # only the good requests' images reached the model: 2 + 1 + 1 + 1 + 3
    assert sum(seen) == 8
    wait_for(lambda: counts(sqs, queues.input) == (0, 0), 15, "input queue empty")

    assert metrics.images._value.get() >= 8
    fetched = {
        s: metrics.image_bytes_fetched.labels(source=s)._value.get() for s in ("s3", "url")
    }
    assert fetched["s3"] > 0 and fetched["url"] > 0
    assert b"gpuqueue_image_fetch_seconds_count" in metrics.render()
    assert worker.summary()["batches"] >= 1


def test_image_embed_clip_and_a_store_failing_with_5xx_is_retried_not_answered(
    tiny_clip: Path, fauxqs_server: Any, bucket: tuple[Any, str], image_server: Any,
    running_workers: list[Worker],
) -> None:
    sqs = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url, region_name=REGION)
    image_server.files["/img/c.png"] = image_bytes("PNG", seed=3)
    metrics = Metrics()
    _, _, queues = image_worker(
        tiny_clip, "image-embed", fauxqs_server, sqs, bucket, image_server, running_workers,
        metrics,
    )
    send_bodies(sqs, queues.input, [
        body([{"s3": "s3://gq-images/photos/3.jpg"}, {"url": image_server.url("/img/c.png")}],
             id="ok"),
        body({"url": image_server.url("/status/503")}, id="flaky"),
    ])
    reader = ResultReader(sqs, queues.results)
    results = {r["id"]: r for r in reader.wait_for(1, timeout=60).values()}
    vectors = results["ok"]["outputs"]
    assert [len(v) for v in vectors] == [16, 16]  # CLIP's projection
    assert all(abs(sum(x * x for x in v) - 1) < 1e-6 for v in vectors)
    # the 503 is transient: no result, the request left for redelivery (not deleted)
    deferred = metrics.failed.labels(error_type="ImageFetchFailed", final="false")
    wait_for(lambda: deferred._value.get() >= 1, 30, "the 503 fetch to be deferred")
    assert image_server.hits.get("/status/503", 0) >= 1
    reader.poll(wait_s=0)
    assert "flaky" not in {r["id"] for r in reader.results.values()}
    visible, in_flight = counts(sqs, queues.input)
    assert visible + in_flight == 1


def test_the_cli_builds_the_image_runner_from_the_settings(
    tiny_vit_classifier: Path, moto_server: Any, bucket: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `python -m worker` does for WORKER_TASK=image-classify: S3 through boto3's standard
    chain (AWS_ENDPOINT_URL here), the metrics fed by the loader."""
    from worker.cli import _image_runner
    from worker.config import load_settings
    from worker.contract.images import ImageRef
    from worker.errors import ImageRejected

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    common = {
        "queue_url": "https://sqs.us-east-1.amazonaws.com/1/q", "require_reply_to": True,
        "task": "image-classify", "model": str(tiny_vit_classifier),
    }
    metrics = Metrics()
    runner = _image_runner(load_settings(image_s3_buckets=bucket[1], **common), metrics)
    encoded = runner.encode([ImageRef("s3", f"s3://{bucket[1]}/photos/0.jpg")], {})
    assert encoded.rows == 1
    assert metrics.images._value.get() == 1
    assert metrics.image_bytes_fetched.labels(source="s3")._value.get() > 0
    # no buckets named: s3 inputs are refused, nothing is read
    closed = _image_runner(load_settings(**common), Metrics())
    with pytest.raises(ImageRejected) as refused:
        closed.encode([ImageRef("s3", f"s3://{bucket[1]}/photos/0.jpg")], {})
    assert refused.value.error_type == "ImageSourceNotAllowed"
