"""Image bytes -> an RGB Pillow image, within the limits: base64 checked, the format one of a
few, the dimensions read from the header and checked against the pixel limit *before* the
pixels are decoded (a 40 KB PNG can claim 100,000 x 100,000), truncated or corrupt files
refused. Every refusal is an `ImageRejected` naming what is wrong. No I/O."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, UnidentifiedImageError

from worker.errors import ImageRejected

#: formats decoded (Pillow's other decoders are not exposed to request bytes)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def set_pillow_pixel_limit(max_pixels: int) -> None:
    """Pillow's own decompression-bomb guard from WORKER_IMAGE_MAX_PIXELS (it warns above the
    limit and refuses above twice it; `decode` refuses above it, from the header, first)."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def decode_base64(text: str, max_bytes: int) -> bytes:
    """The bytes of a `{"base64": ...}` input (standard alphabet; whitespace and a data: URL's
    prefix tolerated)."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    # a cheap bound before decoding: 4 characters carry 3 bytes
    if (len(text) // 4) * 3 > max_bytes + 3:
        raise ImageRejected(
            "ImageTooLarge", f"base64 image is over {max_bytes} bytes (WORKER_IMAGE_MAX_BYTES)"
        )
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRejected("InvalidImage", f"base64 is not valid: {exc}") from None
    if len(data) > max_bytes:
        raise ImageRejected(
            "ImageTooLarge", f"base64 image is {len(data)} bytes; the limit is {max_bytes}"
        )
    if not data:
        raise ImageRejected("InvalidImage", "base64 decodes to no bytes")
    return data


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode one image file to RGB, or raise ImageRejected (InvalidImage, ImageTooLarge)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        head = data[:8].hex()
        raise ImageRejected(
            "InvalidImage",
            f"not an image of a supported format ({', '.join(FORMATS)}); it starts {head}",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(exc, max_pixels) from None
    except Exception as exc:  # a malformed header: Pillow raises many kinds
        raise ImageRejected("InvalidImage", f"cannot read the image: {_why(exc)}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("InvalidImage", f"{image.format} image is {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageRejected(
            "ImageTooLarge",
            f"{image.format} image is {width}x{height} = {width * height} pixels; the limit is "
            f"{max_pixels} (WORKER_IMAGE_MAX_PIXELS)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(exc, max_pixels) from None
    except Exception as exc:
        raise ImageRejected(
            "InvalidImage", f"{image.format} image is truncated or corrupt: {_why(exc)}"
        ) from None


def _bomb(exc: BaseException, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        "ImageTooLarge",
        f"image has more pixels than WORKER_IMAGE_MAX_PIXELS ({max_pixels}): {str(exc)[:200]}",
    )


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"
