"""Image bytes -> an RGB Pillow image, within the limits: base64 checked, the format one of a
few, the dimensions read from the header and checked against the pixel limit *before* the
pixels are decoded (a 40 KB PNG can claim 100,000 x 100,000), and its aspect ratio too (a
100-byte 100,000 x 1 PNG is few pixels, but a processor that scales its short side to 224 makes
it 22 M x 224 before cropping: tens of GB), truncated or corrupt files refused. Pixels come out
as the viewer shows them: the EXIF orientation applied, 16-bit and float greyscale scaled to 8
bits (a plain RGB conversion clips them: white). Every refusal is an `ImageRejected` naming what
is wrong. No I/O."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from worker.errors import ImageRejected

#: formats decoded (Pillow's other decoders are not exposed to request bytes)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: the longest side over the shortest: panoramas and long scans pass; a 1-pixel strip does not
MAX_ASPECT_RATIO = 100
#: Pillow's modes of more than 8 bits per sample, and their full scale
WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


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
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRejected(
            "ImageTooLarge",
            f"{image.format} image is {width}x{height}: its aspect ratio is over "
            f"{MAX_ASPECT_RATIO}:1 (resized for the model it would take "
            f"{max(width, height) // min(width, height)} times a square's memory)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return _to_rgb(_upright(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(exc, max_pixels) from None
    except Exception as exc:
        raise ImageRejected(
            "InvalidImage", f"{image.format} image is truncated or corrupt: {_why(exc)}"
        ) from None


def _upright(image: Image.Image) -> Image.Image:
    """The image as a viewer shows it: phones store the pixels as the sensor read them and the
    turn in the EXIF Orientation tag."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block: the pixels are still good, as stored
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES or image.mode in ("I", "F"):
        return _to_eight_bits(image).convert("RGB")
    return image.convert("RGB")


def _to_eight_bits(image: Image.Image) -> Image.Image:
    """A greyscale image of more than 8 bits as 8-bit "L", scaled from its full range: 65535
    for 16-bit samples (Pillow may hold them as 32-bit "I"), 1.0 for floats in [0, 1], else the
    largest value present."""
    wide = image.convert("F") if image.mode != "F" else image
    full = WIDE_MODES.get(image.mode)
    if full is None:
        extrema = wide.getextrema()  # one band: (low, high)
        high = float(extrema[1])  # type: ignore[arg-type]
        nominal = 1.0 if image.mode == "F" else 65535.0
        full = nominal if high <= nominal else high
    return wide.point(lambda value: value * (255.0 / full)).convert("L")


def _bomb(exc: BaseException, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        "ImageTooLarge",
        f"image has more pixels than WORKER_IMAGE_MAX_PIXELS ({max_pixels}): {str(exc)[:200]}",
    )


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"
