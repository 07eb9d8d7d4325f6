"""Image inputs of the image tasks: one JSON object per image, checked for shape only. Pure: no
I/O; whether a bucket or a host may be read is the image source policy's (worker.images.policy),
whether the bytes are an image the decoder's.

    {"s3": "s3://bucket/key"}    an object in S3 (the bucket on WORKER_IMAGE_S3_BUCKETS)
    {"url": "https://host/..."}  an HTTP(S) URL (the host on WORKER_IMAGE_URL_ALLOW)
    {"base64": "..."}            the image file's bytes, base64 (standard alphabet, padded)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

SourceKind = Literal["s3", "url", "base64"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("s3", "url", "base64")
SHAPES = '{"s3": "s3://bucket/key"}, {"url": "https://host/path"} or {"base64": "..."}'
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class ImageRef:
    """Where one image comes from. `value`: the s3:// URI, the URL, or the base64 text."""

    kind: SourceKind
    value: str

    def describe(self) -> str:
        """For error messages: never the whole base64 text, nor a URL's query."""
        if self.kind == "base64":
            return f"base64 ({len(self.value)} characters)"
        if self.kind == "url":
            return redacted_url(self.value)
        return self.value[:300]


def redacted_url(url: str, limit: int = 300) -> str:
    """A URL as error messages and logs show it: no query or fragment (a presigned URL's
    signature and session token are there), no user:password@."""
    try:
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        hidden = bool(parts.query or parts.fragment)
    except ValueError:  # not even splittable: keep what precedes any query or credentials
        shown = url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
        hidden = shown != url
    return shown[:limit] + ("?(query not shown)" if hidden else "")


def parse_s3_uri(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of `s3://bucket/key`, or None when it is not one."""
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        return None
    if any(segment in (".", "..") for segment in key.split("/")):
        # S3 keeps them as they are, but a proxy or an S3-compatible store that normalises the
        # path would read `allowed/../other-bucket/key` from another bucket
        return None
    return bucket, key


def parse_image_input(value: Any, index: int) -> ImageRef | str:
    """One input of an image task -> an ImageRef, or what is wrong with it (a message)."""
    where = f"input {index}"
    if isinstance(value, str):
        return f"{where} is a string; image tasks take one object per image: {SHAPES}"
    if not isinstance(value, dict):
        shown = "null" if value is None else type(value).__name__
        return f"{where} is {shown}; image tasks take one object per image: {SHAPES}"
    keys = sorted(value)
    if len(keys) != 1 or keys[0] not in SOURCE_KINDS:
        shown = ", ".join(repr(k[:40]) for k in keys[:5]) or "none"
        return f"{where} must have exactly one of the keys s3, url, base64 (got {shown}): {SHAPES}"
    kind = next(k for k in SOURCE_KINDS if k == keys[0])  # the key, typed as a SourceKind
    text = value[kind]
    if not isinstance(text, str):
        return f"{where}: {kind} must be a string, not {type(text).__name__}"
    if not text.strip():
        return f"{where}: {kind} is empty"
    if kind == "s3" and parse_s3_uri(text) is None:
        return f"{where}: s3 must be s3://bucket/key (no . or .. segments), not {text[:200]!r}"
    if kind == "url":
        if len(text) > MAX_URL_CHARS:
            return f"{where}: url is longer than {MAX_URL_CHARS} characters"
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            return f"{where}: url is not a valid URL: {exc}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{where}: url must be an http(s) URL with a host, not {text[:200]!r}"
    return ImageRef(kind, text)
