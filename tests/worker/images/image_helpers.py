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


def png_claiming(width: int, height: int) -> bytes:
    """A small valid-looking PNG whose header claims width x height pixels (a decompression
    bomb: its pixel data would decompress to width x height x 3 bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1024))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
