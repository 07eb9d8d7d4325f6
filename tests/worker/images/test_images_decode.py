"""Image bytes to the RGB pixels a viewer shows, within the limits (real files written by
Pillow; decode does no I/O)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker.errors import ImageRejected
from worker.images.decode import MAX_ASPECT_RATIO, decode_image

MAX_PIXELS = 40_000_000


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_a_strip_of_few_pixels_is_refused_by_its_aspect_ratio() -> None:
    """A 100-byte 100,000 x 1 PNG passed the pixel limit; a processor scaling its short side to
    224 made it 22 M x 224 before cropping (0.45 MB of memory per pixel of length: an OOM kill
    of the worker, and of the next replica at each redelivery)."""
    strip = encoded(Image.new("RGB", (100_000, 1), (10, 20, 30)), "PNG", optimize=True)
    assert len(strip) < 1_000
    with pytest.raises(ImageRejected, match="aspect ratio") as info:
        decode_image(strip, MAX_PIXELS)
    assert info.value.error_type == "ImageTooLarge"
    wide = (MAX_ASPECT_RATIO * 4, 4)  # at the limit: a long panorama still passes
    assert decode_image(encoded(Image.new("RGB", wide), "PNG"), MAX_PIXELS).size == wide


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_greyscale_is_scaled_not_clipped_to_white(fmt: str) -> None:
    """convert("RGB") clipped every 16-bit sample over 255: any real 16-bit scan came out
    white."""
    for level, expected in ((32768, 128), (1000, 4)):
        grey = Image.fromarray(np.full((8, 8), level, dtype=np.uint16))
        pixel = decode_image(encoded(grey, fmt), MAX_PIXELS).getpixel((0, 0))
        assert isinstance(pixel, tuple) and all(abs(c - expected) <= 1 for c in pixel), pixel


def test_the_exif_orientation_is_applied() -> None:
    """A phone stores the pixels as the sensor read them and the turn in EXIF: the model saw
    the picture on its side."""
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the stored left
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    image = decode_image(encoded(stored, "JPEG", exif=exif.tobytes()), MAX_PIXELS)
    assert image.size == (20, 40)
    top = image.getpixel((10, 2))  # the stored left is now the top
    assert isinstance(top, tuple) and top[2] > 200 and top[0] < 60, top
