"""reply_to: parsed into (endpoint, region, account, name) and compared by parts, never as a raw
string; the worker's own input queue and its DLQ refused whatever the allow-list says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.contract.reply_to import (
    AWS,
    AddressError,
    ReplyToPolicy,
    ReplyToRefused,
    parse_queue_address,
)
from worker.contract.request import BadRequest, Request, parse_request

US = "https://sqs.us-east-1.amazonaws.com/123456789012/"
EU = "https://sqs.eu-west-1.amazonaws.com/123456789012/"
RESULT_QUEUE = US + "results"
INPUT_QUEUE = US + "requests"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:requests-dlq"
LOCAL = "http://127.0.0.1:9324/000000000000/"


def policy(patterns: tuple[str, ...] = (), **kwargs: Any) -> ReplyToPolicy:
    options: dict[str, Any] = {
        "region": "us-east-1",
        "input_queue_url": INPUT_QUEUE,
        "result_queue_url": RESULT_QUEUE,
        "dead_letter_arn": DLQ_ARN,
    }
    options.update(kwargs)
    return ReplyToPolicy.build(patterns, **options)


def allowed(reply_to: str, patterns: tuple[str, ...], **kwargs: Any) -> bool:
    try:
        policy(patterns, **kwargs).resolve(reply_to)
    except ReplyToRefused:
        return False
    return True


@pytest.mark.parametrize(
    ("reply_to", "patterns", "expected"),
    [
        (RESULT_QUEUE, (), True),  # the configured result queue is always allowed
        (US + "team-a-out", (US + "team-a-",), True),
        (US + "team-b-out", (US + "team-a-",), False),
        (EU + "res-1", ("arn:aws:sqs:eu-west-1:123456789012:res-*",), True),
        (US + "res-1", ("arn:aws:sqs:eu-west-1:123456789012:res-*",), False),
        (EU + "other", ("arn:aws:sqs:*:123456789012:res-*",), False),
        ("arn:aws:sqs:eu-west-1:123456789012:res-1", ("arn:aws:sqs:eu-west-1:*:res-*",), True),
        ("arn:aws:sqs:eu-west-1:999999999999:res-1", (EU + "res-",), False),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/fifo-out.fifo", (US + "fifo-",), True),
        ("https://us-east-1.queue.amazonaws.com/123456789012/team-a-x", (US + "team-a-",), True),
        ("file:///etc/passwd", (US,), False),
    ],
)
def test_allow_list(reply_to: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert allowed(reply_to, patterns) is expected


@pytest.mark.parametrize(
    ("reply_to", "pattern", "why"),
    [
        # every one of these starts with an allowed prefix, or maps onto an allowed ARN
        (US + "team-a-x/../../999999999999/secret", US + "team-a-", "path"),
        (US + "team-a-x/./", US + "team-a-", "path"),
        (US + "team-a-x%2F..%2F999999999999%2Fsecret", US + "team-a-", "path"),
        (US + "team-a-x?QueueUrl=https://evil.example", US + "team-a-", "query"),
        (US + "team-a-x#fragment", US + "team-a-", "query"),
        (US + "team-a-@evil.example", US + "team-a-", "path"),
        (US + "team-a-x;param", US + "team-a-", "query"),
        ("https://evil.example/123456789012/res-1",
         "arn:aws:sqs:us-east-1:123456789012:res-*", "host"),
        ("https://sqs.us-east-1.amazonaws.com.evil.example/123456789012/res-1",
         "arn:aws:sqs:us-east-1:123456789012:res-*", "host"),
        ("https://user:pw@sqs.us-east-1.amazonaws.com/123456789012/res-1",
         "arn:aws:sqs:us-east-1:123456789012:res-*", "credentials"),
        ("http://sqs.us-east-1.amazonaws.com/123456789012/res-1",
         "arn:aws:sqs:us-east-1:123456789012:res-*", "https"),
        ("https://sqs.us-east-1.amazonaws.com:8443/123456789012/res-1",
         "arn:aws:sqs:us-east-1:123456789012:res-*", "https"),
        (US + "team-a-x ", US + "team-a-", "plain ASCII"),
        (US + "team-a-\u00e9", US + "team-a-", "plain ASCII"),
    ],
)
def test_tricks_that_pass_a_string_prefix_are_refused(
    reply_to: str, pattern: str, why: str
) -> None:
    with pytest.raises(ReplyToRefused, match=why):
        policy((pattern,)).resolve(reply_to)


@pytest.mark.parametrize(
    "reply_to",
    [INPUT_QUEUE, "arn:aws:sqs:us-east-1:123456789012:requests", US + "requests-dlq", DLQ_ARN],
)
def test_own_input_queue_and_dlq_are_refused_even_when_the_allow_list_covers_them(
    reply_to: str,
) -> None:
    with pytest.raises(ReplyToRefused, match="own input queue or its dead-letter queue"):
        policy((US, "arn:aws:sqs:*:*:*")).resolve(reply_to)


def test_an_arn_is_sent_to_its_queue_url_on_the_workers_endpoint() -> None:
    assert policy((EU + "res-",)).resolve("arn:aws:sqs:eu-west-1:123456789012:res-1") == (
        EU + "res-1"
    )
    local = policy(
        ("arn:aws:sqs:us-east-1:*:res-*",), input_queue_url=LOCAL + "in", result_queue_url=None
    )
    assert local.resolve("arn:aws:sqs:us-east-1:000000000000:res-x") == LOCAL + "res-x"
    # a local endpoint is known because the worker's own queue is on it
    assert local.resolve(LOCAL + "res-x") == LOCAL + "res-x"
    assert not allowed("http://127.0.0.1:9999/000000000000/res-x", ("arn:aws:sqs:*:*:res-*",),
                       input_queue_url=LOCAL + "in")


def test_an_arn_in_china_or_govcloud_is_sent_to_that_partitions_queue_url() -> None:
    china = "arn:aws-cn:sqs:cn-north-1:123456789012:res-1"
    assert policy(("arn:aws-cn:sqs:cn-north-1:123456789012:res-*",)).resolve(china) == (
        "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/res-1"
    )
    address = parse_queue_address(
        china, region="cn-north-1", home_endpoint=AWS, known_endpoints=()
    )
    assert address.arn == china
    gov = "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:res-1"
    assert parse_queue_address(gov, region="x", home_endpoint=AWS, known_endpoints=()).arn == gov


@pytest.mark.parametrize(
    "spelling",
    [
        "https://eu-west-1.queue.amazonaws.com/123456789012/res-1",  # the legacy host
        "https://sqs.eu-west-1.amazonaws.com:443/123456789012/res-1",
        "https://SQS.EU-WEST-1.AMAZONAWS.COM/123456789012/res-1",
    ],
)
def test_a_queue_on_aws_is_sent_to_by_its_canonical_url_however_spelt(spelling: str) -> None:
    """Sent to as written, these went through the worker's home region (only the canonical form
    is routed to the queue's own), SQS answered InvalidAddress, and the computed result was
    dropped for a ReplyToUnreachable error."""
    assert policy((EU + "res-",)).resolve(spelling) == EU + "res-1"


def test_an_allow_list_arn_pattern_keeps_to_its_partition() -> None:
    """The partition was not compared: an allow-list of GovCloud queues only let a commercial
    region's queue of the same account and name through, and an ARN naming the wrong partition
    for its region (arn:aws:sqs:cn-north-1:…) passed as if it named a queue."""
    gov_only = ("arn:aws-us-gov:sqs:*:123456789012:res-*",)
    assert not allowed(EU + "res-a", gov_only)
    assert not allowed("arn:aws:sqs:eu-west-1:123456789012:res-a", gov_only)
    assert allowed("arn:aws-us-gov:sqs:us-gov-west-1:123456789012:res-a", gov_only)
    assert not allowed("arn:aws:sqs:cn-north-1:123456789012:res-a", ("arn:aws:sqs:*:*:*",))
    assert not allowed("arn:aws:sns:cn-north-1:123456789012:res-a", ("arn:aws:sns:*:*:*",))


def test_a_dual_stack_queue_url_is_an_aws_queue() -> None:
    """sqs.REGION.api.aws (IPv6 and IPv4) was refused as "not an SQS endpoint this worker
    uses"; it is the queue's AWS address, sent to by its canonical URL."""
    assert policy((EU + "res-",)).resolve(
        "https://sqs.eu-west-1.api.aws/123456789012/res-1"
    ) == EU + "res-1"


VPC_ENDPOINT = "https://vpce-0abc-def.sqs.us-east-1.vpce.amazonaws.com/123456789012/"


@pytest.mark.parametrize("name", ["requests", "requests-dlq", "billing"])
def test_an_arn_of_another_region_is_refused_on_an_endpoint_that_serves_one_region(
    name: str,
) -> None:
    # Sent through a VPC endpoint (or an emulator), an ARN of another region would name this
    # region's queue of that account and name: the worker's own input queue and its DLQ
    # slipped past their refusal, and a region in the allow-list meant nothing.
    vpc = policy(
        ("arn:aws:sqs:*:123456789012:*",), input_queue_url=VPC_ENDPOINT + "requests",
        result_queue_url=VPC_ENDPOINT + "results",
    )
    with pytest.raises(ReplyToRefused, match="names region eu-west-1, but this worker's SQS"):
        vpc.resolve(f"arn:aws:sqs:eu-west-1:123456789012:{name}")
    assert vpc.resolve("arn:aws:sqs:us-east-1:123456789012:billing") == VPC_ENDPOINT + "billing"


@pytest.mark.parametrize(
    "pattern",
    ["file:", "arn:aws:sqs:us-east-1", "arn:aws:sns:us-east-1:123456789012", "https://h/x/y",
     "https://h/123456789012/a/b", "https://u@h/123456789012/x", "team-a-*"],
)
def test_bad_allow_list_entries_fail_at_start(pattern: str) -> None:
    with pytest.raises(AddressError):
        policy((pattern,))


def test_address_parts() -> None:
    address = parse_queue_address(
        EU + "res-1", region="us-east-1", home_endpoint=AWS, known_endpoints=()
    )
    assert (address.endpoint, address.region, address.account, address.name) == (
        AWS, "eu-west-1", "123456789012", "res-1",
    )
    assert address.arn == "arn:aws:sqs:eu-west-1:123456789012:res-1"
    assert address.url == EU + "res-1"


def test_refused_reply_to_gets_an_error_that_goes_to_the_result_queue_not_to_it() -> None:
    other = "https://sqs.us-east-1.amazonaws.com/999999999999/somebody-elses-queue"
    body = json.dumps({"id": "r", "inputs": "a", "reply_to": other})
    parsed = parse_request(body, worker_task="embed", max_body_bytes=10_000, reply_to=policy())
    assert isinstance(parsed, BadRequest)
    assert (parsed.type, parsed.request_id, parsed.reply_to) == ("ReplyToNotAllowed", "r", None)


@settings(max_examples=500, deadline=None)
@given(
    reply_to=st.one_of(
        st.text(max_size=80),
        st.builds(lambda s: US + "team-a-" + s, st.text(max_size=30)),
        st.builds(lambda s: "arn:aws:sqs:us-east-1:123456789012:team-a-" + s, st.text(max_size=20)),
    )
)
def test_whatever_is_allowed_is_a_clean_queue_url_the_allow_list_covers(reply_to: str) -> None:
    patterns = (US + "team-a-",)
    try:
        url = policy(patterns).resolve(reply_to)
    except ReplyToRefused:
        return
    address = parse_queue_address(url, region="us-east-1", home_endpoint=AWS, known_endpoints=())
    assert url == address.url  # nothing beyond https://host/account/name
    assert (address.region, address.account) == ("us-east-1", "123456789012")
    assert address.name.startswith("team-a-") or url == RESULT_QUEUE
    parsed = parse_request(
        json.dumps({"inputs": "x", "reply_to": reply_to}),
        worker_task="embed",
        max_body_bytes=10_000,
        reply_to=policy(patterns),
    )
    assert isinstance(parsed, Request) and parsed.reply_to == url


@pytest.mark.parametrize(
    "reply_to",
    [
        "arn:aws:sqs:-:123456789012:res-a",  # botocore refuses it: it broke the writer
        "arn:aws:sqs:" + "a" * 64 + ":123456789012:res-a",
        "arn:aws:sqs:zz0-x-1:123456789012:res-a",
        "https://sqs.not-a-region.amazonaws.com/123456789012/res-a",
        "arn:aws:sns:-:123456789012:res-a",
    ],
)
def test_a_region_that_is_no_aws_region_shape_is_refused(reply_to: str) -> None:
    """Behind a region glob (`arn:aws:sqs:*:ACCOUNT:res-*`) any [a-z0-9-] string passed as a
    region: requests could name endless regions (each a new set of clients, kept), and one
    botocore refuses raised out of the writer, the request re-run until the DLQ."""
    allowing = policy(("arn:aws:sqs:*:123456789012:res-*", "arn:aws:sns:*:123456789012:res-*"))
    with pytest.raises(ReplyToRefused):
        allowing.resolve(reply_to)
    for fine in ("arn:aws:sqs:eu-west-1:123456789012:res-a",
                 "arn:aws:sqs:ap-southeast-2:123456789012:res-a"):
        assert allowing.resolve(fine).startswith("https://sqs.")
