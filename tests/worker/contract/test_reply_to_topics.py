"""reply_to naming an SNS topic: allowed only by an SNS ARN pattern, compared by parts; several
input queues and their DLQs all refused."""

from __future__ import annotations

from typing import Any

import pytest

from worker.contract.reply_to import (
    AddressError,
    ReplyToPolicy,
    ReplyToRefused,
    is_topic,
    parse_pattern,
)

US = "https://sqs.us-east-1.amazonaws.com/123456789012/"
TOPIC = "arn:aws:sns:us-east-1:123456789012:done-team-a"


def policy(patterns: tuple[str, ...], **kwargs: Any) -> ReplyToPolicy:
    options: dict[str, Any] = {
        "region": "us-east-1",
        "input_queue_url": US + "requests",
        "result_queue_url": US + "results",
    }
    options.update(kwargs)
    return ReplyToPolicy.build(patterns, **options)


@pytest.mark.parametrize(
    ("reply_to", "patterns", "expected"),
    [
        (TOPIC, ("arn:aws:sns:us-east-1:123456789012:done-*",), True),
        (TOPIC, ("arn:aws:sns:*:123456789012:done-team-a",), True),
        (TOPIC, ("arn:aws:sns:eu-west-1:123456789012:done-*",), False),
        (TOPIC, ("arn:aws:sns:us-east-1:999999999999:*",), False),
        # an SQS pattern never allows a topic, nor an SNS pattern a queue
        (TOPIC, ("arn:aws:sqs:us-east-1:123456789012:done-*",), False),
        ("arn:aws:sqs:us-east-1:123456789012:done-q", ("arn:aws:sns:*:*:done-*",), False),
        (US + "done-q", ("arn:aws:sns:*:*:done-*",), False),
        # FIFO topics and malformed ARNs are refused even under a catch-all pattern
        (TOPIC + ".fifo", ("arn:aws:sns:*:*:*",), False),
        ("arn:aws:sns:us-east-1:123456789012:", ("arn:aws:sns:*:*:*",), False),
        ("arn:aws:sns:us-east-1:12345:t", ("arn:aws:sns:*:*:*",), False),
        ("arn:aws:sns:us-east-1:123456789012:a/b", ("arn:aws:sns:*:*:*",), False),
        (TOPIC + ":subscription-id", ("arn:aws:sns:*:*:*",), False),
    ],
)
def test_topic_reply_to_against_the_allow_list(
    reply_to: str, patterns: tuple[str, ...], expected: bool
) -> None:
    try:
        resolved = policy(patterns).resolve(reply_to)
    except ReplyToRefused:
        assert not expected
    else:
        assert expected
        assert resolved == reply_to and is_topic(resolved)


def test_a_topic_pattern_is_seen_by_the_policy() -> None:
    assert policy(("arn:aws:sns:*:123456789012:done-*",)).allows_topics
    assert not policy((US + "team-",)).allows_topics
    with pytest.raises(AddressError, match="SNS topic ARN pattern"):
        parse_pattern("arn:aws:sns:us-east-1:123456789012:bad/name", region="us-east-1")


def test_every_input_queue_and_its_dlq_is_refused() -> None:
    inputs = [US + "high", US + "low"]
    arn = "arn:aws:sqs:us-east-1:123456789012:"
    dlqs = [arn + "high-dlq", arn + "low-dlq"]
    p = policy(("arn:aws:sqs:*:123456789012:*",), input_queue_url=inputs, dead_letter_arn=dlqs)
    for refused in [*inputs, *dlqs, US + "low-dlq"]:
        with pytest.raises(ReplyToRefused, match="own input queue"):
            p.resolve(refused)
    assert p.resolve(US + "elsewhere") == US + "elsewhere"
