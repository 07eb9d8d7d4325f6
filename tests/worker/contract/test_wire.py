"""What SQS counts, SendMessageBatch packing, and the SQS Extended Client's S3 pointer."""

from __future__ import annotations

import json

import pytest

from worker.contract.result import build_result, result_message
from worker.contract.wire import (
    ATTR_MESSAGE_ID,
    pack_send_batches,
    parse_s3_pointer,
    s3_pointer_message,
)
from worker.seams import OutgoingMessage


def test_message_size_counts_utf8_body_and_attribute_names_types_values() -> None:
    message = OutgoingMessage(
        "héllo",
        {
            "k": {"DataType": "String", "StringValue": "vé"},
            "n": {"DataType": "Number", "StringValue": "12"},
        },
    )
    assert message.size == len("héllo".encode()) + (1 + 6 + 3) + (1 + 6 + 2)


def test_offload_threshold_counts_attributes() -> None:
    body = "x" * 1000
    bare = OutgoingMessage(body)
    with_attr = OutgoingMessage(body, {"a": {"DataType": "String", "StringValue": "y"}})
    assert bare.size == 1000
    assert with_attr.size > 1000  # the body alone fits in 1000 bytes; with attributes it does not


def test_s3_pointer_is_the_extended_client_format() -> None:
    original = result_message(
        build_result(message_id="m", request_id="r", model="x", outputs=["é" * 10])
    )
    pointer = s3_pointer_message(original, "bucket-1", "results/abc.json")
    assert json.loads(pointer.body) == [
        "software.amazon.payloadoffloading.PayloadS3Pointer",
        {"s3BucketName": "bucket-1", "s3Key": "results/abc.json"},
    ]
    assert pointer.attributes["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(len(original.body.encode("utf-8"))),
    }
    assert pointer.attributes[ATTR_MESSAGE_ID]["StringValue"] == "m"  # dedup survives
    assert parse_s3_pointer(pointer.body) == ("bucket-1", "results/abc.json")
    assert parse_s3_pointer(original.body) is None
    assert parse_s3_pointer("not json") is None


def test_pack_send_batches_respects_entry_count_and_bytes() -> None:
    assert [len(b) for b in pack_send_batches([10] * 23, 1_000_000)] == [10, 10, 3]
    batches = pack_send_batches([400] * 5, 1000)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b] == list(range(5))  # order kept
    with pytest.raises(ValueError):
        pack_send_batches([2000], 1000)
