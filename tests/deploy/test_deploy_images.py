"""The image-embed example overlay and the image workers' S3 policy (docs/images.md)."""

from __future__ import annotations

import json

from deploy_helpers import REPO, env_of

from worker.config import load_settings
from worker.tasks import IMAGE_TASKS


def test_image_embed_example_is_a_valid_image_worker(render) -> None:
    env = env_of(render("examples/team-c-image-embed"))
    assert env["WORKER_TASK"] in IMAGE_TASKS
    worker = {k.removeprefix("WORKER_").lower(): v for k, v in env.items() if k[:7] == "WORKER_"}
    settings = load_settings(**worker)
    assert settings.image_s3_buckets == "team-c-listing-photos"
    assert settings.image_url_allow.startswith("https://")
    assert not settings.image_allow_networks  # no private addresses from a cluster


def test_the_image_policy_is_get_object_on_named_buckets_only() -> None:
    policy = json.loads((REPO / "deploy" / "iam" / "worker-images-s3-read.json").read_text())
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == ["s3:GetObject"]
    for resource in statement["Resource"]:
        assert resource.startswith("arn:aws:s3:::") and resource.endswith("/*")
        assert "*" not in resource[len("arn:aws:s3:::"):-2]  # a named bucket, not a wildcard
