"""Request deadlines: ttl_s from SentTimestamp, deadline in epoch seconds, the default TTL, and the
schema's checks on both fields."""

from __future__ import annotations

import json

import pytest

from worker.contract.deadline import expired, request_deadline
from worker.contract.reply_to import ReplyToPolicy
from worker.contract.request import BadRequest, Request, parse_request

US = "https://sqs.us-east-1.amazonaws.com/123456789012/"
POLICY = ReplyToPolicy.build(
    (), region="us-east-1", input_queue_url=US + "in", result_queue_url=US + "out"
)


def parse(body: dict[str, object]) -> Request | BadRequest:
    return parse_request(
        json.dumps(body), worker_task="embed", max_body_bytes=10_000, reply_to=POLICY
    )


def deadline(**kwargs: object) -> float | None:
    options: dict[str, object] = {
        "ttl_s": None, "deadline": None, "sent_timestamp_ms": 1_000_000,
        "received_wall": 1_005.0, "default_ttl_s": None,
    }
    options.update(kwargs)
    return request_deadline(**options)  # type: ignore[arg-type]


def test_ttl_counts_from_sent_timestamp_and_the_earlier_of_two_applies() -> None:
    assert deadline() is None
    assert deadline(ttl_s=30) == 1_030.0  # SentTimestamp 1,000 s, not the receive at 1,005 s
    assert deadline(deadline=1_020.0) == 1_020.0
    assert deadline(ttl_s=30, deadline=1_020.0) == 1_020.0
    assert deadline(ttl_s=10, deadline=1_020.0) == 1_010.0
    assert deadline(sent_timestamp_ms=None, ttl_s=30) == 1_035.0  # no SentTimestamp: receive


def test_the_default_ttl_applies_only_to_requests_that_name_neither() -> None:
    assert deadline(default_ttl_s=60) == 1_060.0
    assert deadline(default_ttl_s=60, ttl_s=600) == 1_600.0  # the request's own ttl wins
    assert deadline(default_ttl_s=60, deadline=2_000.0) == 2_000.0


def test_expired_is_at_or_past_the_deadline() -> None:
    assert not expired(None, 10**12)
    assert not expired(100.0, 99.999)
    assert expired(100.0, 100.0)


def test_request_fields_parse_and_bad_values_name_the_field() -> None:
    parsed = parse({"inputs": "x", "ttl_s": 2.5, "deadline": 1_700_000_000})
    assert isinstance(parsed, Request)
    assert (parsed.ttl_s, parsed.deadline) == (2.5, 1_700_000_000)
    for field, value in [("ttl_s", 0), ("ttl_s", -1), ("ttl_s", "10"), ("deadline", True)]:
        bad = parse({"inputs": "x", field: value})
        assert isinstance(bad, BadRequest) and bad.type == "InvalidRequest", (field, value)
        assert field in bad.message


@pytest.mark.parametrize("value", [1, 0.001, 86_400.0])
def test_integer_and_float_ttls_both_take_the_fast_path(value: float) -> None:
    parsed = parse({"inputs": "x", "ttl_s": value})
    assert isinstance(parsed, Request) and parsed.ttl_s == value
