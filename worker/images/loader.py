"""The image loader: a request's images fetched (S3, URL) or decoded from base64, then decoded
by Pillow within the limits, concurrently on a thread pool (WORKER_IMAGE_FETCH_THREADS): an
encoder thread waits on the slowest image of its requests, never the model thread.

A request's images either all load or the request fails as a whole: the first final refusal in
input order (an `ImageRejected`: an error result) wins over a transient one (`RequestDeferred`:
left for redelivery), and the message names the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from PIL import Image

from worker.contract.images import ImageRef
from worker.errors import ImageRejected, RequestDeferred
from worker.images.decode import decode_base64, decode_image, set_pillow_pixel_limit


class Fetcher(Protocol):
    def fetch(self, location: str) -> bytes: ...


class ImageStats(Protocol):
    """Where the loader reports what it read (worker.metrics.ImageMetrics)."""

    def fetched(self, source: str, nbytes: int, seconds: float) -> None: ...

    def decoded(self, images: int, seconds: float) -> None: ...


class NullImageStats:
    def fetched(self, source: str, nbytes: int, seconds: float) -> None:
        pass

    def decoded(self, images: int, seconds: float) -> None:
        pass


class ImageLoader:
    def __init__(
        self,
        *,
        s3: Fetcher | None,
        http: Fetcher | None,
        max_bytes: int,
        max_pixels: int,
        threads: int,
        stats: ImageStats | None = None,
    ) -> None:
        self._fetchers: dict[str, Fetcher | None] = {"s3": s3, "url": http}
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.stats: ImageStats = stats or NullImageStats()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpuqueue-image")
        set_pillow_pixel_limit(max_pixels)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def bytes_of(self, ref: ImageRef) -> bytes:
        """The image file's bytes (fetched, or decoded from base64)."""
        if ref.kind == "base64":
            return decode_base64(ref.value, self.max_bytes)
        fetcher = self._fetchers[ref.kind]
        if fetcher is None:
            raise ImageRejected(
                "ImageSourceNotAllowed", f"{ref.kind} inputs are not enabled on this worker"
            )
        began = time.perf_counter()
        data = fetcher.fetch(ref.value)
        self.stats.fetched(ref.kind, len(data), time.perf_counter() - began)
        return data

    def load_one(self, ref: ImageRef, transform: Transform | None = None) -> Any:
        """One image fetched and decoded, then `transform`ed (the model's preprocessing), on
        the calling thread."""
        data = self.bytes_of(ref)
        began = time.perf_counter()
        image = decode_image(data, self.max_pixels)
        if transform is not None:
            try:
                image = transform(image)
            except Exception as exc:
                raise ImageRejected(
                    "InvalidImage",
                    f"the image processor refused it: {type(exc).__name__}: {str(exc)[:200]}",
                ) from None
        self.stats.decoded(1, time.perf_counter() - began)
        return image

    def load_many(
        self, requests: Sequence[Sequence[ImageRef]], transform: Transform | None = None
    ) -> list[list[Any] | ImageRejected | RequestDeferred]:
        """Every image of every request at once on the pool; per request its images (decoded,
        then transformed) in order, or the exception refusing it."""
        futures = [
            [self._pool.submit(self.load_one, ref, transform) for ref in refs]
            for refs in requests
        ]
        return [_gather(request) for request in futures]

    def load(self, refs: Sequence[ImageRef]) -> list[Image.Image]:
        out = self.load_many([refs])[0]
        if isinstance(out, Exception):
            raise out
        return out


Transform = Callable[[Image.Image], Any]


def _gather(futures: list[Future[Any]]) -> list[Any] | ImageRejected | RequestDeferred:
    images: list[Any] = []
    deferred: RequestDeferred | None = None
    for index, future in enumerate(futures):
        try:
            images.append(future.result())
        except ImageRejected as exc:
            for rest in futures[index + 1 :]:
                rest.cancel()
            return ImageRejected(exc.error_type, f"input {index}: {exc}")
        except RequestDeferred as exc:
            deferred = deferred or RequestDeferred(exc.error_type, f"input {index}: {exc}")
        except Exception as exc:  # a fetcher's bug, not the request's: try again later
            deferred = deferred or RequestDeferred(
                "ImageFetchFailed", f"input {index}: {type(exc).__name__}: {exc}"
            )
    return deferred if deferred is not None else images
