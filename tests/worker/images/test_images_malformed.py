"""Property: malformed image inputs (truncated files, wrong magic bytes, huge dimensions, bad
base64, wrong types and shapes) each become an error result of a known type naming what is
wrong, and none reaches the model (its forward is counted)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_helpers import image_bytes, png_claiming

from worker.contract.error_types import ERROR_TYPES
from worker.contract.reply_to import ReplyToPolicy
from worker.contract.request import BadRequest, parse_request
from worker.images.loader import ImageLoader
from worker.model.image_runner import ImageModelRunner

MAX_PIXELS = 1_000_000
POLICY = ReplyToPolicy.build(
    (), region="us-east-1",
    input_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/in",
    result_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/out",
)
FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]


@pytest.fixture(scope="module")
def runner(tiny_vit_classifier: Path) -> ImageModelRunner:
    loader = ImageLoader(s3=None, http=None, max_bytes=100_000, max_pixels=MAX_PIXELS, threads=2)
    return ImageModelRunner.load(str(tiny_vit_classifier), "image-classify", loader, device="cpu")


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


@st.composite
def truncated(draw: st.DrawFn) -> dict[str, str]:
    data = image_bytes(draw(st.sampled_from(FORMATS)), seed=draw(st.integers(0, 5)))
    return b64(data[: draw(st.integers(0, len(data) // 2))])


@st.composite
def wrong_magic(draw: st.DrawFn) -> dict[str, str]:
    data = image_bytes(draw(st.sampled_from(FORMATS)))
    junk = draw(st.binary(min_size=4, max_size=16).filter(lambda b: b[:2] not in (b"BM", b"II")))
    return b64(junk + data[len(junk):] if draw(st.booleans()) else junk)


@st.composite
def huge(draw: st.DrawFn) -> dict[str, str]:
    width = draw(st.integers(1_001, 70_000))
    height = draw(st.integers(MAX_PIXELS // width + 1, 70_000))
    return b64(png_claiming(width, height))


bad_base64 = st.one_of(
    # at least one character that is not white space: blank base64 is empty, a contract error
    st.text(alphabet="!@#$%^&*()<>?~`é€ \t", min_size=1, max_size=40).filter(str.strip),
    st.text(alphabet="ABCDEFGHabcdefgh0123456789+/", min_size=1, max_size=41).filter(
        lambda s: len(s) % 4 == 1
    ),
    st.just("===="),
).map(lambda text: {"base64": text})

wrong_shape = st.one_of(
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.just("a string, not an image object"),
    st.dictionaries(st.sampled_from(["s3", "url", "base64", "file", "S3"]),
                    st.one_of(st.integers(), st.none(), st.just("")), min_size=1, max_size=3),
    st.just({"s3": "not-an-s3-uri"}),
    st.just({"s3": "s3://bucket-only"}),
    st.just({"url": "ftp://host/a.png"}),
    st.just({"url": "http://[::1"}),
    st.just({"s3": "s3://b/k", "url": "https://x/y"}),
    st.just({}),
)

#: each kind of malformed input, tagged with the error types it may be answered with
malformed = st.one_of(
    truncated().map(lambda v: (v, {"InvalidImage", "InvalidRequest"})),  # empty: InvalidRequest
    wrong_magic().map(lambda v: (v, {"InvalidImage"})),
    huge().map(lambda v: (v, {"ImageTooLarge"})),
    bad_base64.map(lambda v: (v, {"InvalidImage"})),
    st.sampled_from(["", " ", "\t \n"]).map(lambda t: ({"base64": t}, {"InvalidRequest"})),
    wrong_shape.map(lambda v: (v, {"InvalidRequest"})),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=malformed, good_before=st.booleans())
def test_malformed_inputs_are_error_results_and_never_reach_the_model(
    runner: ImageModelRunner, case: tuple[Any, set[str]], good_before: bool
) -> None:
    bad, expected = case
    inputs = [b64(image_bytes()), bad] if good_before else [bad]
    body = json.dumps({"id": "x", "task": "image-classify", "inputs": inputs})
    calls: list[int] = []
    model: Any = runner.model
    real = model.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    model.forward = counted
    try:
        parsed = parse_request(
            body, worker_task="image-classify", max_body_bytes=262_144, reply_to=POLICY
        )
        if isinstance(parsed, BadRequest):
            error_type, message = parsed.type, parsed.message
        else:
            [refusal] = runner.encode_many([(parsed.inputs, parsed.parameters)])
            assert isinstance(refusal, Exception), f"accepted {bad!r}"
            error_type, message = refusal.error_type, str(refusal)  # type: ignore[attr-defined]
    finally:
        model.forward = real
    assert error_type in ERROR_TYPES and ERROR_TYPES[error_type].final
    assert error_type in expected, (error_type, message)
    index = 1 if good_before else 0
    assert f"input {index}" in message, message  # names which input is wrong
    assert calls == []


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "PCX", "ICO"])
def test_formats_outside_the_list_are_refused(runner: ImageModelRunner, fmt: str) -> None:
    """Pillow decodes dozens of formats; request bytes reach only the common image formats'."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out, fmt)
    [refusal] = runner.encode_many([([_ref(out.getvalue())], {})])
    assert isinstance(refusal, Exception)
    assert refusal.error_type == "InvalidImage"  # type: ignore[attr-defined]
    assert "supported format" in str(refusal)


def _ref(data: bytes) -> Any:
    from worker.contract.images import ImageRef

    return ImageRef("base64", base64.b64encode(data).decode())
