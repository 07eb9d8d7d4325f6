"""The contract's image inputs: objects for the image tasks only, strings for the text tasks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.contract.images import ImageRef
from worker.contract.reply_to import ReplyToPolicy
from worker.contract.request import BadRequest, Request, parse_request

POLICY = ReplyToPolicy.build(
    (), region="us-east-1",
    input_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/in",
    result_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/out",
)


def parse(body: dict[str, Any], task: str) -> Request | BadRequest:
    return parse_request(
        json.dumps(body), worker_task=task, max_body_bytes=262_144, reply_to=POLICY
    )


def test_image_task_takes_one_object_per_image() -> None:
    parsed = parse(
        {"inputs": [{"s3": "s3://b/k.jpg"}, {"url": "https://h/x.png"}, {"base64": "AAAA"}]},
        "image-embed",
    )
    assert isinstance(parsed, Request)
    assert parsed.inputs == [
        ImageRef("s3", "s3://b/k.jpg"), ImageRef("url", "https://h/x.png"),
        ImageRef("base64", "AAAA"),
    ]
    single = parse({"inputs": {"s3": "s3://b/k.jpg"}, "task": "image-classify"}, "image-classify")
    assert isinstance(single, Request) and len(single.inputs) == 1


@pytest.mark.parametrize(
    ("inputs", "task", "fragment"),
    [
        ("a photo of a cat", "image-embed", "input 0 is a string; image tasks take one object"),
        ([{"s3": "s3://b/k"}, "text"], "image-classify", "input 1 is a string"),
        ({"s3": "s3://b/k"}, "embed", "takes text inputs (strings); input 0 is an object"),
        (["ok", {"url": "https://h/x"}], "classify", "input 1 is an object"),
        ([{"file": "/etc/passwd"}], "image-embed", "exactly one of the keys s3, url, base64"),
        ([{"s3": "s3://b/k", "url": "https://h/x"}], "image-embed", "exactly one"),
        ([{"s3": "b/k"}], "image-embed", "s3://bucket/key"),
        # a proxy that normalises the path would read another bucket
        ([{"s3": "s3://allowed/../secret/k.jpg"}], "image-embed", "s3://bucket/key"),
        ([{"s3": "s3://allowed/a/./k.jpg"}], "image-embed", "s3://bucket/key"),
        ([{"url": "file:///etc/passwd"}], "image-embed", "http(s) URL"),
        ([{"base64": 5}], "image-embed", "base64 must be a string"),
        ([{"url": ""}], "image-embed", "url is empty"),
    ],
)
def test_wrong_kind_of_input_is_a_clear_invalid_request(
    inputs: Any, task: str, fragment: str
) -> None:
    parsed = parse({"inputs": inputs}, task)
    assert isinstance(parsed, BadRequest)
    assert parsed.type == "InvalidRequest"
    assert fragment in parsed.message, parsed.message


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("image_url_allow", "images.example.com", "WORKER_IMAGE_URL_ALLOW: expected scheme://"),
        ("image_url_allow", "https://x.com/path", "WORKER_IMAGE_URL_ALLOW: a host, not a URL"),
        ("image_allow_networks", "10.0.0.0/33", "WORKER_IMAGE_ALLOW_NETWORKS: not a CIDR"),
        ("image_s3_buckets", "s3://bucket/prefix", "WORKER_IMAGE_S3_BUCKETS: bucket names"),
        ("image_max_pixels", "0", "WORKER_IMAGE_MAX_PIXELS"),
    ],
)
def test_bad_image_settings_fail_at_start_naming_the_variable(
    setting: str, value: str, fragment: str
) -> None:
    from worker.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as error:
        load_settings(
            queue_url="https://sqs.us-east-1.amazonaws.com/1/q", require_reply_to=True,
            model="m", task="image-embed", **{setting: value},
        )
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)
