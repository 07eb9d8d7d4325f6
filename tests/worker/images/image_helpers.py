"""Helpers shared by the image tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

import io

from PIL import Image

IMAGE_LABELS = {0: "cat", 1: "dog", 2: "car", 3: "boat"}
SIZE = 32  # the tiny models' input size (patch 8: 16 patches)


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    colour = ((seed * 70) % 256, (seed * 130 + 40) % 256, (seed * 30 + 90) % 256)
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 4):  # some structure, so images differ after resizing
        image.putpixel((x, (x * (seed + 1)) % size[1]), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()
