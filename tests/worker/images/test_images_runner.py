"""The image runner with real tiny models: image-embed (ViT pooled output, CLIP's image tower),
image-classify (labels, top_k), CLIP's text tower through `embed`, batches by count, the OOM
split; refusals that never reach the model."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from image_helpers import IMAGE_LABELS, image_bytes
from PIL import Image

from worker.contract.images import ImageRef
from worker.errors import ImageRejected, InvalidParameters
from worker.images.loader import ImageLoader
from worker.model import ModelRunner
from worker.model.image_runner import ImageEncoded, ImageModelRunner
from worker.seams import ModelFailure


def b64(data: bytes) -> ImageRef:
    return ImageRef("base64", base64.b64encode(data).decode())


def loader(**overrides: Any) -> ImageLoader:
    options: dict[str, Any] = {
        "s3": None, "http": None, "max_bytes": 1 << 20, "max_pixels": 1 << 22, "threads": 4,
    }
    options.update(overrides)
    return ImageLoader(**options)


def runner_for(path: Path, task: Any, **overrides: Any) -> ImageModelRunner:
    return ImageModelRunner.load(str(path), task, loader(**overrides), device="cpu")


def encode_run(runner: ImageModelRunner, refs: list[ImageRef], params: dict[str, Any]) -> Any:
    encoded = runner.encode(refs, params)
    return runner.run(runner.prepare([(encoded, params)]))[0]


def test_image_classify_gives_a_known_label_and_a_probability(tiny_vit_classifier: Path) -> None:
    runner = runner_for(tiny_vit_classifier, "image-classify")
    out = encode_run(runner, [b64(image_bytes("PNG")), b64(image_bytes("JPEG", seed=3))], {})
    assert len(out) == 2
    for value in out:
        assert value["label"] in IMAGE_LABELS.values()
        assert 0.0 < value["score"] <= 1.0


def test_image_classify_top_k_lists_the_best_first(tiny_vit_classifier: Path) -> None:
    runner = runner_for(tiny_vit_classifier, "image-classify")
    [top3] = encode_run(runner, [b64(image_bytes())], {"top_k": 3})
    assert [set(d) for d in top3] == [{"label", "score"}] * 3
    scores = [d["score"] for d in top3]
    assert scores == sorted(scores, reverse=True)
    [single] = encode_run(runner, [b64(image_bytes())], {})
    assert single == top3[0]
    with pytest.raises(InvalidParameters, match="top_k"):
        runner.encode([b64(image_bytes())], {"top_k": 0})
    [all_labels] = encode_run(runner, [b64(image_bytes())], {"top_k": 100})
    assert len(all_labels) == len(IMAGE_LABELS)  # capped at the model's labels
    assert math.isclose(sum(d["score"] for d in all_labels), 1.0, rel_tol=1e-5)


def test_image_embed_vit_pooled_output_is_unit_length(tiny_vit_backbone: Path) -> None:
    runner = runner_for(tiny_vit_backbone, "image-embed")
    a, b = encode_run(runner, [b64(image_bytes(seed=1)), b64(image_bytes(seed=2))], {})
    assert len(a) == 32
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-6)
    assert a != b
    [raw] = encode_run(runner, [b64(image_bytes(seed=1))], {"normalize": False})
    assert not math.isclose(sum(x * x for x in raw), 1.0, rel_tol=1e-3)


def test_clip_image_embed_matches_get_image_features(tiny_clip: Path) -> None:
    runner = runner_for(tiny_clip, "image-embed")
    data = image_bytes(seed=5)
    [vector] = encode_run(runner, [b64(data)], {})
    assert len(vector) == 16  # CLIP's projection, not the 32-wide hidden state
    pixels = runner.processor(images=[Image.open(io.BytesIO(data)).convert("RGB")],
                              return_tensors="pt")["pixel_values"]
    model: Any = runner.model
    with torch.inference_mode():
        out = model.get_image_features(pixel_values=pixels)
    features = out if isinstance(out, torch.Tensor) else out.pooler_output
    expected = torch.nn.functional.normalize(features, dim=1)[0].tolist()
    assert vector == pytest.approx(expected, abs=1e-6)


def test_clip_text_tower_serves_embed_in_the_same_space(tiny_clip: Path) -> None:
    text = ModelRunner.load(str(tiny_clip), "embed", device="cpu")
    prepared = text.prepare([(text.encode(["a photo of a cat"], {}), {})])
    [[vector]] = text.run(prepared)  # type: ignore[misc]
    assert len(vector) == 16  # the text projection: comparable with image-embed's vectors
    assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-6)
    with torch.inference_mode():
        ids = torch.tensor([text.encode(["a photo of a cat"], {}).token_ids[0]])
        tower: Any = text.model
        out = tower.get_text_features(input_ids=ids, attention_mask=torch.ones_like(ids))
    features = out if isinstance(out, torch.Tensor) else out.pooler_output
    assert vector == pytest.approx(torch.nn.functional.normalize(features, dim=1)[0].tolist(),
                                   abs=1e-6)


def test_batches_stack_requests_and_split_on_oom(
    tiny_vit_classifier: Path, count_forwards: Any
) -> None:
    runner = runner_for(tiny_vit_classifier, "image-classify")
    items: list[tuple[ImageEncoded, dict[str, Any]]] = [
        (runner.encode([b64(image_bytes(seed=i))] * (i + 1), {}), {}) for i in range(4)
    ]
    assert [enc.rows for enc, _ in items] == [1, 2, 3, 4]
    alone = [runner.run(runner.prepare([item]))[0] for item in items]
    seen = count_forwards(
        runner, lambda ids: torch.OutOfMemoryError("CUDA out of memory") if ids.shape[0] > 3
        else None
    )
    outputs = runner.run(runner.prepare(items))
    assert seen[0] == 10  # the whole batch first: 1+2+3+4 images
    # the same answers as alone: labels exactly, scores to float32's rounding (a forward's
    # kernels depend on its batch's shape, so the last bits may differ by CPU)
    for got, want in zip(outputs[:3], alone[:3], strict=True):
        assert isinstance(got, list) and isinstance(want, list)
        assert [row["label"] for row in got] == [row["label"] for row in want]
        assert [row["score"] for row in got] == pytest.approx([row["score"] for row in want],
                                                              rel=1e-5)
    assert isinstance(outputs[3], ModelFailure) and outputs[3].type == "OutOfMemory"


def test_too_many_images_in_one_request_is_refused_before_fetching(tiny_vit_classifier: Path,
                                                                   count_forwards: Any) -> None:
    runner = ImageModelRunner.load(
        str(tiny_vit_classifier), "image-classify", loader(), device="cpu", max_images=2
    )
    seen = count_forwards(runner)
    with pytest.raises(ImageRejected) as refused:
        runner.encode([b64(image_bytes())] * 3, {})
    assert refused.value.error_type == "ImageTooLarge"
    assert "WORKER_IMAGE_MAX_PER_REQUEST" in str(refused.value)
    assert seen == []


def test_encoded_images_are_fixed_size(tiny_clip: Path) -> None:
    runner = runner_for(tiny_clip, "image-embed")
    wide = runner.encode([b64(image_bytes(size=(200, 30)))], {})
    tall = runner.encode([b64(image_bytes(size=(20, 90)))], {})
    assert isinstance(wide, ImageEncoded)
    assert wide.shape == tall.shape == (3, 32, 32)
    assert len(runner.prepare([(wide, {}), (tall, {})]).groups) == 1
