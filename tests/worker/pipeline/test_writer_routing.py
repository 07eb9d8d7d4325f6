"""Each outcome the writer carries out ends on exactly one path: sent then deleted, released, or
answered as unreachable. Pure unit tests of that routing, with a seam that records every call
(the end-to-end paths run against fauxqs in test_pipeline.py and test_sns_destination.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from worker_test_helpers import wait_for

from worker.contract.result import build_result
from worker.errors import DestinationUnreachable
from worker.pipeline.capacity import CapacityEstimator
from worker.pipeline.ledger import Job, JobState, Ledger
from worker.pipeline.observer import NullObserver
from worker.pipeline.outcomes import Action, Answering, Outcome
from worker.pipeline.writer import ResultWriter
from worker.seams import BatchOutcome, OutgoingMessage, ReceivedMessage

INPUT = "https://sqs.us-east-1.amazonaws.com/123456789012/input"
RESULTS = "https://sqs.us-east-1.amazonaws.com/123456789012/results"
REPLY = "https://sqs.us-east-1.amazonaws.com/123456789012/reply"


class Recorded:
    """The queue seam: every call recorded. The reply queue takes 1,000 bytes a message (one
    result per call here); its first call fails entry 0, and every later one is refused whole
    (the queue was deleted or its policy changed while the group was being written)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: dict[str, list[str]] = {}  # queue -> gpuqueue-message-id of each sent
        self.released: list[str] = []
        self.deleted: list[str] = []
        self.reply_calls = 0

    def max_message_size(self, queue_url: str) -> int:
        return 1000

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        with self._lock:
            ids = [m.attributes["gpuqueue-message-id"]["StringValue"] for m in messages]
            if queue_url == REPLY:
                self.reply_calls += 1
                if self.reply_calls > 1:
                    raise DestinationUnreachable(queue_url, "AccessDenied")
                self.sent.setdefault(queue_url, []).extend(ids[1:])
                return BatchOutcome(
                    succeeded=list(range(1, len(ids))), failed={0: "InternalError: later"}
                )
            self.sent.setdefault(queue_url, []).extend(ids)
            return BatchOutcome(succeeded=list(range(len(ids))))

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome:
        with self._lock:
            self.deleted += receipt_handles
        return BatchOutcome(succeeded=list(range(len(receipt_handles))))

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        with self._lock:
            self.released += [handle for handle, _ in changes]
        return BatchOutcome(succeeded=list(range(len(changes))))


def make_writer(sqs: Recorded) -> tuple[Ledger, ResultWriter]:
    ledger = Ledger()
    capacity = CapacityEstimator(
        configured=10, visibility_timeout_s=60, max_batch_size=4, receivers=1
    )
    writer = ResultWriter(
        sqs, ledger, capacity, NullObserver(), Answering("m", RESULTS, 60),
        claim_check=None, threads=1, linger_s=0.0,
    )
    return ledger, writer


def messages(n: int) -> list[ReceivedMessage]:
    return [ReceivedMessage(INPUT, f"m{i}", f"h{i}", "{}", 1, None) for i in range(n)]


def spawn(name: str, target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def result_for(job: Job) -> Outcome:
    result = build_result(
        message_id=job.message.message_id, request_id=job.message.message_id, model="m",
        outputs=["x" * 300],
    )
    return Outcome(job, Action.SEND, "ok", result=result, destination=REPLY)


def test_an_entry_failed_before_the_destination_turned_unreachable_is_only_released() -> None:
    """A group to a reply_to, split into calls by bytes: call 1 failed entry 0, call 2 was
    refused (AccessDenied). Entry 0 was released *and* answered ReplyToUnreachable on the result
    queue and deleted: re-run by another replica if it came back before the delete."""
    sqs = Recorded()
    ledger, writer = make_writer(sqs)
    jobs = ledger.admit(messages(3), reserved=0, visibility_s=60)
    writer.start(spawn)
    writer.accept([result_for(job) for job in jobs], JobState.RECEIVED)
    wait_for(lambda: ledger.held == 0, 10, "every outcome carried out")
    writer.close()
    for thread in writer.threads:
        thread.join(5)

    assert sqs.reply_calls == 2  # one result per call: the third was never tried
    assert sqs.released == ["h0"]  # comes back, and is answered then
    # m1 and m2 unreachable: answered on the result queue, and deleted
    assert sqs.sent == {REPLY: [], RESULTS: ["m1", "m2"]}
    assert sorted(sqs.deleted) == ["h1", "h2"]


class RefusedDuringTheDrain(Recorded):
    """The reply queue's first call waits until the drain has begun, then is refused whole."""

    def __init__(self) -> None:
        super().__init__()
        self.on_the_wire = threading.Event()
        self.drain_began = threading.Event()

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        if queue_url == REPLY:
            self.on_the_wire.set()
            assert self.drain_began.wait(10)
            raise DestinationUnreachable(queue_url, "QueueDoesNotExist")
        return super().send_batch(queue_url, messages)


def test_a_reply_to_found_unreachable_during_the_drain_is_still_answered() -> None:
    """The drain closes the outbox first, then lets the writers finish: the ReplyToUnreachable
    errors of a group they were writing could not be queued, and were dropped (the requests,
    neither answered nor released, waited out their visibility timeout)."""
    sqs = RefusedDuringTheDrain()
    ledger, writer = make_writer(sqs)
    jobs = ledger.admit(messages(2), reserved=0, visibility_s=60)
    writer.start(spawn)
    writer.accept([result_for(job) for job in jobs], JobState.RECEIVED)
    assert sqs.on_the_wire.wait(10)
    writer.close()
    sqs.drain_began.set()
    for thread in writer.threads:
        thread.join(10)
    assert sqs.sent == {RESULTS: ["m0", "m1"]}
    assert sorted(sqs.deleted) == ["h0", "h1"] and sqs.released == []
    assert ledger.held == 0


class TinyQueue(Recorded):
    """A reply queue that takes 600 bytes a message: too small even for a ResultTooLarge error
    of a request with a long id."""

    def max_message_size(self, queue_url: str) -> int:
        return 600

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        with self._lock:
            ids = [m.attributes["gpuqueue-message-id"]["StringValue"] for m in messages]
            self.sent.setdefault(queue_url, []).extend(ids)
        return BatchOutcome(succeeded=list(range(len(ids))))


def test_a_result_that_fits_in_no_form_fails_alone() -> None:
    """A result over the limit even as its ResultTooLarge error made the group's packing raise:
    the writer gave up on the whole group, which was neither sent, deleted nor released (every
    result in it came back after its visibility timeout, to the DLQ)."""
    sqs = TinyQueue()
    ledger, writer = make_writer(sqs)
    small, huge = ledger.admit(messages(2), reserved=0, visibility_s=60)
    fits = Outcome(small, Action.SEND, "ok", destination=REPLY, result=build_result(
        message_id="m0", request_id="a", model="m", outputs=[1]))
    too_big = Outcome(huge, Action.SEND, "ok", destination=REPLY, result=build_result(
        message_id="m1", request_id="x" * 256, model="m", outputs=["y" * 5000]))
    writer.start(spawn)
    writer.accept([fits, too_big], JobState.RECEIVED)
    wait_for(lambda: ledger.held == 0, 10, "both outcomes carried out")
    writer.close()
    for thread in writer.threads:
        thread.join(5)
    assert sqs.sent == {REPLY: ["m0"]} and sqs.deleted == ["h0"] and sqs.released == ["h1"]


class SendOnlyQueue(Recorded):
    """A reply_to whose policy grants SendMessage only (its size cannot be read) and whose
    MaximumMessageSize is 1,024 bytes: SQS refuses a bigger message as real SQS words it."""

    bodies: list[str]

    def max_message_size(self, queue_url: str) -> int:
        raise RuntimeError("AccessDenied: not authorized to perform sqs:GetQueueAttributes")

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        with self._lock:
            outcome = BatchOutcome()
            for i, message in enumerate(messages):
                if message.size > 1024:
                    outcome.failed[i] = (
                        "InvalidParameterValue: One or more parameters are invalid. Reason: "
                        "Message must be shorter than 1024 bytes."
                    )
                else:
                    outcome.succeeded.append(i)
                    self.bodies = [*getattr(self, "bodies", []), message.body]
                    self.sent.setdefault(queue_url, []).append(
                        message.attributes["gpuqueue-message-id"]["StringValue"]
                    )
            return outcome


def test_a_result_refused_as_over_a_queues_unread_limit_is_fitted_to_it() -> None:
    """The reply queue's size could not be read, so 256 KiB was assumed; SQS refused the 3 KB
    result as over its real 1,024 bytes, and that was taken as transient: released, run again,
    refused again, to the DLQ (never an S3 pointer, never an answer). The limit SQS names is
    learned and the result fitted to it: here, with no S3, a ResultTooLarge error, answered."""
    sqs = SendOnlyQueue()
    ledger, writer = make_writer(sqs)
    [job] = ledger.admit(messages(1), reserved=0, visibility_s=60)
    big = Outcome(job, Action.SEND, "ok", destination=REPLY, result=build_result(
        message_id="m0", request_id="a", model="m", outputs=["y" * 3000]))
    writer.start(spawn)
    writer.accept([big], JobState.RECEIVED)
    wait_for(lambda: ledger.held == 0, 10, "the outcome carried out")
    writer.close()
    for thread in writer.threads:
        thread.join(5)
    assert sqs.released == [] and sqs.deleted == ["h0"]
    [body] = sqs.bodies
    assert '"ResultTooLarge"' in body and "1024-byte" in body
    assert writer.destinations.limit(REPLY) == 1024  # asked no more
