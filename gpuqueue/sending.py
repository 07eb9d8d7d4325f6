"""SendMessageBatch for many messages: packed within 10 entries and the queue's byte limit per
call, `Failed` entries retried (unless SQS says the sender is at fault), what still fails
reported with its reason. The call itself is passed in, so the logic is tested without a server
and the client gives it boto3's.

Delivery is at-least-once: an entry SQS reported `Successful` is never sent again, but a call
that failed in transit may have reached SQS, and its entries are sent again."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.contract.wire import pack_send_batches
from worker.errors import QUEUE_UNREACHABLE_CODES, error_code
from worker.seams import OutgoingMessage

SendBatch = Callable[[list[dict[str, Any]]], Mapping[str, Any]]

RETRIES = 3
# the queue is gone or refuses us, or our credentials are refused: no retry can help, and
# every later call would fail alike
PERMANENT_CODES = QUEUE_UNREACHABLE_CODES | {"InvalidClientTokenId", "UnrecognizedClientException"}


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)  # indexes, in the order SQS confirmed them
    failed: dict[int, str] = field(default_factory=dict)  # index -> the last reason
    calls: int = 0
    interrupted: bool = False  # Ctrl-C: what was not confirmed is in `failed`, saying so


def entry(index: int, message: OutgoingMessage, fifo_key: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"Id": str(index), "MessageBody": message.body}
    if message.attributes:
        e["MessageAttributes"] = {k: dict(v) for k, v in message.attributes.items()}
    if fifo_key is not None:
        # a group per request: no request waits behind another's (a FIFO group is delivered
        # one in-flight batch at a time); and SQS drops a resend within five minutes
        e["MessageGroupId"] = e["MessageDeduplicationId"] = fifo_key
    return e


def send_all(
    send_batch: SendBatch,
    messages: Sequence[OutgoingMessage],
    *,
    max_batch_bytes: int,
    retries: int = RETRIES,
    sleep: Callable[[float], None] = time.sleep,
    on_sent: Callable[[int], None] | None = None,
    fifo_keys: Sequence[str] | None = None,
) -> SendReport:
    """Send every message; `on_sent(n)` after each call that confirmed n (a progress bar). A
    KeyboardInterrupt ends it with the report so far (`interrupted`), not with nothing: a rerun
    must know what went out."""
    report = SendReport()
    pending = list(range(len(messages)))
    for attempt in range(retries + 1):
        again: list[int] = []
        for batch in pack_send_batches([messages[i].size for i in pending], max_batch_bytes):
            indexes = [pending[j] for j in batch]
            try:
                sending = _send_one(send_batch, messages, indexes, report, again, fifo_keys)
            except KeyboardInterrupt:
                return _interrupted(report, indexes, [*again, *_rest(pending, indexes)])
            if not sending:
                return _give_up(report, [*again, *_rest(pending, indexes)], indexes[0])
            if on_sent is not None:
                on_sent(sum(1 for i in indexes if i not in report.failed))
        pending = again
        if not pending:
            break
        if attempt < retries:
            sleep(min(2.0, 0.2 * 2**attempt))
    return report


def _send_one(
    send_batch: SendBatch,
    messages: Sequence[OutgoingMessage],
    indexes: list[int],
    report: SendReport,
    again: list[int],
    fifo_keys: Sequence[str] | None = None,
) -> bool:
    """One SendMessageBatch; False when the queue refuses us for good (stop sending)."""
    report.calls += 1
    try:
        response = send_batch([
            entry(k, messages[i], fifo_keys[i] if fifo_keys is not None else None)
            for k, i in enumerate(indexes)
        ])
    except Exception as exc:
        code = error_code(exc)
        for i in indexes:
            report.failed[i] = f"{code}: {exc}"[:500]
        if code in PERMANENT_CODES:
            return False
        again.extend(indexes)
        return True
    for ok in response.get("Successful", ()):
        i = indexes[int(ok["Id"])]
        report.failed.pop(i, None)
        report.sent.append(i)
    for bad in response.get("Failed", ()):
        i = indexes[int(bad["Id"])]
        report.failed[i] = f"{bad.get('Code', '?')}: {bad.get('Message', '')}"[:500]
        if not bad.get("SenderFault"):
            again.append(i)
    return True


def _rest(pending: list[int], current: list[int]) -> list[int]:
    """The pending indexes after the current call's (never tried, in this round)."""
    last = pending.index(current[-1])
    return pending[last + 1 :]


def _interrupted(report: SendReport, on_the_wire: list[int], unsent: list[int]) -> SendReport:
    confirmed = set(report.sent)
    for i in on_the_wire:
        if i not in confirmed:
            report.failed[i] = "interrupted while being sent: it may have reached the queue"
    for i in unsent:
        if i not in confirmed and i not in report.failed:
            report.failed[i] = "interrupted before it was sent"
    report.interrupted = True
    return report


def _give_up(report: SendReport, unsent: list[int], refused: int) -> SendReport:
    """The queue refused us: everything not yet confirmed fails with that reason."""
    reason = report.failed[refused]
    for i in unsent:
        report.failed.setdefault(i, reason)
    return report
