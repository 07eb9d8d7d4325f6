"""The image loader from the settings: the source policy, an S3 fetcher when buckets are named,
a URL fetcher when hosts are, the limits and the pool. What the CLI, the tests and the bench use.
"""

from __future__ import annotations

from typing import Any

from worker.config import WorkerSettings
from worker.images.loader import ImageLoader, ImageStats
from worker.images.policy import ImageSourcePolicy


def build_loader(
    settings: WorkerSettings, *, stats: ImageStats | None = None, s3_client: Any = None,
    **http_options: Any,
) -> ImageLoader:
    """`s3_client`: a boto3 S3 client to use (default: worker.s3's, with a connection per fetch
    thread); `http_options` go to HttpImageFetcher (a test's resolver)."""
    policy = ImageSourcePolicy.from_settings(
        settings.image_s3_buckets, settings.image_url_allow, settings.image_allow_networks
    )
    s3 = http = None
    if policy.s3_buckets:
        from worker.images.s3_fetch import S3ImageFetcher, make_image_client

        client = s3_client or make_image_client(
            settings.image_fetch_threads, settings.image_fetch_timeout_s
        )
        s3 = S3ImageFetcher(client, policy, max_bytes=settings.image_max_bytes)
    if policy.url_patterns:
        from worker.images.http_fetch import HttpImageFetcher

        http = HttpImageFetcher(
            policy, max_bytes=settings.image_max_bytes,
            timeout_s=settings.image_fetch_timeout_s,
            resolver_threads=settings.image_fetch_threads, **http_options,
        )
    return ImageLoader(
        s3=s3, http=http, max_bytes=settings.image_max_bytes,
        max_pixels=settings.image_max_pixels, threads=settings.image_fetch_threads, stats=stats,
    )
