"""How results travel: the message shape SQS takes, the bytes it counts, SendMessageBatch packing,
the SQS Extended Client's S3 claim-check pointer, and the attributes that key duplicates. Pure.

A result message carries two string attributes: `gpuqueue-message-id` (the request's SQS message
id: the dedup key, since one request yields one result and a second result for the same id can
only be a redelivery) and `gpuqueue-request-id` (the caller's id, when it gave one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from worker.seams import OutgoingMessage
from worker.sqs_limits import BATCH_MAX_ENTRIES

#: SNS's limit per message and per PublishBatch call (body plus attributes, counted as SQS does)
SNS_MAX_MESSAGE_SIZE = 262_144

ATTR_MESSAGE_ID = "gpuqueue-message-id"
ATTR_REQUEST_ID = "gpuqueue-request-id"

# The AWS SQS Extended Client's claim-check format (its Java and Python clients read it).
S3_POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
ATTR_EXTENDED_SIZE = "ExtendedPayloadSize"

_SQS_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_safe(text: str) -> bool:
    """Whether SQS can carry `text` in a body or attribute (its allowed Unicode ranges)."""
    return _SQS_UNSAFE.search(text) is None


def result_attributes(message_id: str, request_id: str | None) -> dict[str, dict[str, str]]:
    """The dedup key (the request's SQS message id) and the caller's id, as message attributes."""
    attributes = {ATTR_MESSAGE_ID: {"DataType": "String", "StringValue": message_id}}
    if request_id:
        attributes[ATTR_REQUEST_ID] = {"DataType": "String", "StringValue": request_id}
    return attributes


def s3_pointer_message(message: OutgoingMessage, bucket: str, key: str) -> OutgoingMessage:
    """The claim-check that replaces a too-large message, as the SQS Extended Client writes it:
    the body names the S3 object, the attributes stay, and `ExtendedPayloadSize` holds the
    original body's size."""
    body = json.dumps([S3_POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])
    attributes = dict(message.attributes)
    attributes[ATTR_EXTENDED_SIZE] = {
        "DataType": "Number",
        "StringValue": str(len(message.body.encode("utf-8"))),
    }
    return OutgoingMessage(body, attributes)


def parse_s3_pointer(body: str) -> tuple[str, str] | None:
    """(bucket, key) when `body` is an Extended Client S3 pointer, else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(data, list)
        and len(data) == 2
        and data[0] == S3_POINTER_CLASS
        and isinstance(data[1], dict)
        and isinstance(data[1].get("s3BucketName"), str)
        and isinstance(data[1].get("s3Key"), str)
    ):
        return data[1]["s3BucketName"], data[1]["s3Key"]
    return None


def pack_send_batches(sizes: Sequence[int], max_batch_bytes: int) -> list[list[int]]:
    """Split messages of these sizes (by index, order kept) into SendMessageBatch calls: at most
    10 entries and at most `max_batch_bytes` summed payload per call. Each must fit on its own."""
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, size in enumerate(sizes):
        if size > max_batch_bytes:
            raise ValueError(f"message {index} is {size} bytes, over the {max_batch_bytes} limit")
        full = len(current) == BATCH_MAX_ENTRIES or current_bytes + size > max_batch_bytes
        if current and full:
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        batches.append(current)
    return batches
