"""submit_many's packing and retries, as a property: whatever sizes and whatever SQS answers
(entries failed for a while, some for good, sender faults, whole calls failing), no call is over
10 entries or the byte limit, every entry is confirmed at most once, and each ends either sent
(exactly once) or reported failed with a reason. A pure test of the logic: the client against
real servers is in test_gpuqueue_client.py."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuqueue.sending import send_all
from worker.seams import OutgoingMessage
from worker.sqs_limits import message_size

LIMIT = 4096


class FlakySqs:
    """Answers SendMessageBatch like SQS would, with failures drawn by hypothesis."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.calls: list[list[dict[str, Any]]] = []
        self.delivered: list[str] = []

    def send_batch(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(entries)
        if self.data.draw(st.integers(0, 9), label="whole call fails") == 0:
            raise ConnectionError("connection reset")
        ok, failed = [], []
        for e in entries:
            fate = self.data.draw(st.sampled_from(["ok"] * 6 + ["retry", "sender"]))
            if fate == "ok":
                ok.append({"Id": e["Id"], "MessageId": "m"})
                self.delivered.append(e["MessageBody"])
            else:
                failed.append({"Id": e["Id"], "Code": "X", "Message": fate,
                               "SenderFault": fate == "sender"})
        return {"Successful": ok, "Failed": failed}


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, LIMIT - 100), max_size=60), data=st.data())
def test_every_entry_is_sent_once_or_reported_and_no_call_is_over_a_limit(
    sizes: list[int], data: st.DataObject
) -> None:
    messages = [OutgoingMessage(f"{i:05d}" + "x" * max(0, n - 5)) for i, n in enumerate(sizes)]
    sqs = FlakySqs(data)
    report = send_all(sqs.send_batch, messages, max_batch_bytes=LIMIT, sleep=lambda _: None)
    for call in sqs.calls:
        assert 1 <= len(call) <= 10
        assert sum(message_size(e["MessageBody"], {}) for e in call) <= LIMIT
    assert len(sqs.delivered) == len(set(sqs.delivered))  # confirmed at most once each
    sent_bodies = {messages[i].body for i in report.sent}
    assert sent_bodies == set(sqs.delivered)
    assert set(report.sent).isdisjoint(report.failed)
    assert set(report.sent) | set(report.failed) == set(range(len(messages)))
    assert all(reason for reason in report.failed.values())


def test_a_queue_that_refuses_us_stops_the_sending_and_fails_everything_left() -> None:
    class Gone(Exception):
        code = "AWS.SimpleQueueService.NonExistentQueue"

    calls: list[list[dict[str, Any]]] = []

    def send_batch(entries: list[dict[str, Any]]) -> dict[str, Any]:
        calls.append(entries)
        raise Gone("no such queue")

    report = send_all(send_batch, [OutgoingMessage("x")] * 25, max_batch_bytes=LIMIT)
    assert len(calls) == 1  # not once per batch, nor retried
    assert report.sent == [] and sorted(report.failed) == list(range(25))
    assert "NonExistentQueue" in report.failed[24]
