"""Settings for several input queues, their weights and the default TTL: exactly one of
WORKER_QUEUE_URL and WORKER_QUEUE_URLS, one weight per queue, errors naming the variable."""

from __future__ import annotations

import os

import pytest

from worker.config import ConfigError, load_settings

Q = "https://sqs.us-east-1.amazonaws.com/123456789012/"
BASE = {"result_queue_url": Q + "results"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("WORKER_"):
            monkeypatch.delenv(key)


def test_queue_urls_in_priority_order_and_the_first_is_the_queue_url() -> None:
    settings = load_settings(**BASE, queue_urls=f" {Q}high , {Q}low ")
    assert settings.input_queue_urls == (Q + "high", Q + "low")
    assert settings.queue_url == Q + "high" and settings.input_queue_weights is None
    weighted = load_settings(**BASE, queue_urls=f"{Q}high,{Q}low", queue_weights="3,1")
    assert weighted.input_queue_weights == (3, 1)
    one = load_settings(**BASE, queue_url=Q + "only", default_ttl_s=30)
    assert one.input_queue_urls == (Q + "only",) and one.default_ttl_s == 30


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "WORKER_QUEUE_URL: required"),
        ({"queue_url": Q + "a", "queue_urls": Q + "b"}, "WORKER_QUEUE_URLS: set together"),
        ({"queue_urls": f"{Q}a,{Q}a"}, "WORKER_QUEUE_URLS: names a queue twice"),
        ({"queue_urls": f"{Q}a,not-a-url"}, "WORKER_QUEUE_URLS: not an SQS queue URL"),
        ({"queue_urls": f"{Q}a,{Q}b", "queue_weights": "3"}, "WORKER_QUEUE_WEIGHTS: 1 weights"),
        ({"queue_urls": f"{Q}a,{Q}b", "queue_weights": "3,0"}, "WORKER_QUEUE_WEIGHTS: weights"),
        ({"queue_url": Q + "a", "default_ttl_s": 0}, "WORKER_DEFAULT_TTL_S"),
        ({"queue_url": Q + "a", "reply_to_allow": "arn:aws:sns:x"}, "WORKER_REPLY_TO_ALLOW"),
    ],
)
def test_bad_queue_settings_name_the_variable(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(**BASE, **options)
