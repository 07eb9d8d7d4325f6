"""What SQS allows, in one place (the SQS Developer Guide's quotas for messages and batches)."""

from __future__ import annotations

from collections.abc import Mapping

#: entries in one SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch call
BATCH_MAX_ENTRIES = 10
#: messages one ReceiveMessage returns at most
RECEIVE_MAX_MESSAGES = 10
#: the longest long poll (WaitTimeSeconds): fewest empty receives
RECEIVE_MAX_WAIT_S = 20
#: a message stays invisible at most 12 h counted from its receive, whatever the extensions
MAX_HOLD_S = 12 * 3600
#: so no single VisibilityTimeout can be longer either
MAX_VISIBILITY_S = MAX_HOLD_S
#: MaximumMessageSize of queues created before August 2025 (1 MiB since): assumed when a queue
#: cannot be asked
HISTORICAL_MAX_MESSAGE_SIZE = 262_144


def message_size(body: str, attributes: Mapping[str, Mapping[str, str]]) -> int:
    """Bytes SQS counts against MaximumMessageSize: the body plus, for each message attribute,
    its name, data type and value (UTF-8)."""
    total = len(body) if body.isascii() else len(body.encode("utf-8"))
    for name, attribute in attributes.items():
        total += len(name.encode("utf-8")) + len(attribute["DataType"].encode("utf-8"))
        if "StringValue" in attribute:
            total += len(attribute["StringValue"].encode("utf-8"))
        elif "BinaryValue" in attribute:
            total += len(attribute["BinaryValue"])
    return total
