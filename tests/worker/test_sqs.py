"""The SQS adapter against real local servers (fauxqs and moto): receive attributes, batch calls
that half-fail with HTTP 200 (`Failed` entries), per-entry retries, visibility changes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from worker_test_helpers import counts, make_queues, send_bodies, wait_for

from worker.errors import DestinationUnreachable
from worker.seams import OutgoingMessage
from worker.sqs import SqsAdapter
from worker.sqs_transport import SqsApiError

REGION = "us-east-1"


@pytest.fixture
def adapter(sqs_server: Any) -> SqsAdapter:
    transports = SqsAdapter.from_environment(
        endpoint_url=sqs_server.endpoint_url, region_name=REGION
    )
    return SqsAdapter(HalfFail(transports.control), transports.poll, sleep=lambda _: None)


class HalfFail:
    """The real transport; `fail_once` makes the next SendMessageBatch report entry 1 as failed
    (server side, SenderFault false) though the server accepted it."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.fail_once = False

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.transport.call(operation, params)
        if operation == "SendMessageBatch" and self.fail_once and response.get("Successful"):
            self.fail_once = False
            entry = next(e for e in response["Successful"] if e["Id"] == "1")
            response["Successful"].remove(entry)
            response.setdefault("Failed", []).append(
                {"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            )
        return response


def test_receive_asks_for_receive_count_and_sent_timestamp(
    adapter: SqsAdapter, sqs_client: Any
) -> None:
    queues = make_queues(sqs_client)
    [message_id] = send_bodies(sqs_client, queues.input, ["hello"])
    [first] = adapter.receive(queues.input, wait_s=1, visibility_timeout_s=0)
    assert (first.message_id, first.body, first.receive_count) == (message_id, "hello", 1)
    assert first.sent_timestamp_ms is not None and first.sent_timestamp_ms > 1_600_000_000_000
    # visibility 0 on receive: it is visible again at once, and the count goes up
    [second] = wait_for(lambda: adapter.receive(queues.input, wait_s=1), 10, "redelivery")
    assert second.receive_count == 2


def test_max_message_size_is_read_from_the_queue(adapter: SqsAdapter, sqs_client: Any) -> None:
    queues = make_queues(sqs_client, result_max_size=2048)
    assert adapter.max_message_size(queues.results) == 2048


def test_delete_batch_reports_the_failed_entry_and_deletes_the_rest(
    adapter: SqsAdapter, sqs_client: Any, sqs_server: Any
) -> None:
    if sqs_server.kind == "fauxqs":
        pytest.skip("fauxqs 1.9.2 accepts any receipt handle on delete; AWS and moto reject it")
    queues = make_queues(sqs_client)
    send_bodies(sqs_client, queues.input, ["a", "b", "c"])
    received = wait_for(
        lambda: (got := [*adapter.receive(queues.input, wait_s=1)]) and len(got) == 3 and got,
        10,
        "three messages",
    )
    handles = [m.receipt_handle for m in received]
    outcome = adapter.delete_batch(queues.input, [handles[0], "not-a-receipt-handle", handles[2]])
    assert 1 in outcome.failed
    assert set(outcome.succeeded) == {0, 2}
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 1), 10, "two deleted, one held")


def test_failed_entries_are_retried_one_by_one(adapter: SqsAdapter, sqs_client: Any) -> None:
    """A batch that half-fails with HTTP 200 (SenderFault false): the failed entry is retried
    alone and lands; a sender-fault entry is not retried."""
    queues = make_queues(sqs_client)
    adapter.control.fail_once = True  # type: ignore[attr-defined]
    calls_before = adapter.calls
    outcome = adapter.send_batch(queues.results, [OutgoingMessage(f"m{i}") for i in range(3)])
    assert outcome.succeeded == [0, 1, 2] and outcome.failed == {}
    assert adapter.calls - calls_before == 2  # the batch call, then entry 1 alone
    # entry 1 went out twice (at-least-once: a duplicate result, which consumers drop)
    wait_for(lambda: counts(sqs_client, queues.results)[0] == 4, 10, "four messages")


def test_sender_fault_entries_are_not_retried(adapter: SqsAdapter, sqs_client: Any) -> None:
    queues = make_queues(sqs_client)
    send_bodies(sqs_client, queues.input, ["x"])
    [message] = wait_for(lambda: adapter.receive(queues.input, wait_s=1), 10, "a message")
    calls_before = adapter.calls
    outcome = adapter.change_visibility_batch(
        queues.input, [(message.receipt_handle, 0), ("bogus-handle", 0)]
    )
    assert outcome.succeeded == [0] and list(outcome.failed) == [1]
    assert adapter.calls - calls_before == 1  # SenderFault: no retry
    # visibility 0: it is back at once
    wait_for(lambda: counts(sqs_client, queues.input) == (1, 0), 10, "released")


def test_more_than_ten_entries_is_refused(adapter: SqsAdapter) -> None:
    with pytest.raises(ValueError):
        adapter.send_batch("http://unused", [OutgoingMessage("x")] * 11)


def test_sends_and_deletes_wait_longer_than_heartbeats(sqs_server: Any, sqs_client: Any) -> None:
    """A send that timed out may have landed, and resending it is a duplicate result: sends and
    deletes go through their own transport, with a longer read timeout than the one that keeps
    heartbeats failing fast."""
    from worker.sqs import CONTROL, WRITE

    assert WRITE["read_timeout_s"] > CONTROL["read_timeout_s"]
    environment = SqsAdapter.from_environment(
        endpoint_url=sqs_server.endpoint_url, region_name=REGION
    )
    seen: list[str] = []

    class Named:
        def __init__(self, name: str, transport: Any) -> None:
            self.name, self.transport = name, transport

        def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
            seen.append(f"{self.name}:{operation}")
            return self.transport.call(operation, params)  # type: ignore[no-any-return]

    adapter = SqsAdapter(
        Named("control", environment.control),
        Named("poll", environment.poll),
        Named("write", environment.write),
    )
    queues = make_queues(sqs_client)
    adapter.send_batch(queues.input, [OutgoingMessage("x")])
    [message] = wait_for(lambda: adapter.receive(queues.input, wait_s=1), 10, "a message")
    adapter.change_visibility_batch(queues.input, [(message.receipt_handle, 30)])
    adapter.delete_batch(queues.input, [message.receipt_handle])
    assert seen == [
        "write:SendMessageBatch",
        "poll:ReceiveMessage",
        "control:ChangeMessageVisibilityBatch",
        "write:DeleteMessageBatch",
    ]


def test_a_queue_in_another_region_is_sent_to_through_that_regions_endpoint(
    moto_server: Any,
) -> None:
    """SQS answers a queue URL of another region with InvalidAddress ("not valid for this
    endpoint"): a reply_to in eu-west-1 from a worker in us-east-1 never arrived. moto keeps a
    queue per region (the signing region), so it shows which region a call went to."""
    import boto3

    eu = boto3.client("sqs", endpoint_url=moto_server.endpoint_url, region_name="eu-west-1")
    eu.create_queue(QueueName="results-eu")
    account = eu.get_queue_url(QueueName="results-eu")["QueueUrl"].rstrip("/").split("/")[-2]
    reply_to = f"https://sqs.eu-west-1.amazonaws.com/{account}/results-eu"
    made: list[str] = []

    def regional(region: str) -> SqsAdapter:
        made.append(region)
        return SqsAdapter.from_environment(endpoint_url=moto_server.endpoint_url,
                                           region_name=region)

    home = SqsAdapter.from_environment(endpoint_url=moto_server.endpoint_url, region_name=REGION)
    routed = SqsAdapter(home.control, home.poll, home.write, regional=regional)
    for _ in range(2):
        outcome = routed.send_batch(reply_to, [OutgoingMessage("hello", {})])
        assert outcome.succeeded == [0] and not outcome.failed
    assert made == ["eu-west-1"]  # one adapter per region, made once
    assert routed.queue_attributes(reply_to, ["QueueArn"])["QueueArn"].startswith(
        "arn:aws:sqs:eu-west-1:"
    )
    assert counts(eu, eu.get_queue_url(QueueName="results-eu")["QueueUrl"]) == (2, 0)
    # without the routing, the same call goes to us-east-1, where there is no such queue
    with pytest.raises(DestinationUnreachable):
        home.send_batch(reply_to, [OutgoingMessage("hello", {})])
    assert routed.calls >= 3


def test_writers_meeting_a_new_region_at_once_make_one_adapter(moto_server: Any) -> None:
    """Two writers whose first reply_to in a region arrived together each made an adapter,
    from one boto3 session in two threads at once (which boto3 does not support)."""
    home = SqsAdapter.from_environment(endpoint_url=moto_server.endpoint_url, region_name=REGION)
    lock, both_in = threading.Lock(), threading.Event()
    made: list[str] = []
    inside = most_inside = 0

    def regional(region: str) -> SqsAdapter:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
            if inside == 2:
                both_in.set()
        # a second maker, if one is let in, arrives within this wait (making an adapter takes
        # a session's client set-up: tens of ms)
        both_in.wait(0.5)
        made.append(region)
        adapter = SqsAdapter.from_environment(endpoint_url=moto_server.endpoint_url,
                                              region_name=region)
        with lock:
            inside -= 1
        return adapter

    routed = SqsAdapter(home.control, home.poll, home.write, regional=regional)
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/results-eu"
    threads = [threading.Thread(target=routed.for_queue, args=(url,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert made == ["eu-west-1"] and most_inside == 1


class FailedEntries:
    """A transport in an SQS brown-out: every batch call answers 200 with every entry failed
    (server side); each single call fails as `single` says, after taking `single_s` seconds
    of the test's clock."""

    def __init__(self, clock: list[float], single: Exception, single_s: float) -> None:
        self.clock, self.single, self.single_s = clock, single, single_s
        self.singles = 0

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation.endswith("Batch"):
            failed = [{"Id": e["Id"], "Code": "InternalError", "Message": "x",
                       "SenderFault": False} for e in params["Entries"]]
            return {"Successful": [], "Failed": failed}
        self.singles += 1
        self.clock[0] += self.single_s
        raise self.single


@pytest.mark.parametrize(
    ("single", "single_s", "most_singles"),
    [
        # the endpoint unreachable for single calls (timed out after the transport's attempts)
        (SqsApiError("ConnectionError", "TimeoutError: timed out"), 15.0, 1),
        # each single call failing slowly but reachably: the batch's budget (10 s) ends it
        (SqsApiError("InternalError", "try again"), 3.0, 4),
    ],
)
def test_the_single_retries_of_a_batch_stop_at_an_unreachable_endpoint_or_the_budget(
    single: Exception, single_s: float, most_singles: int
) -> None:
    """Ten failed entries were each retried alone three times, each retry with the transport's
    own three attempts: 90 calls one after the other, 7.5 minutes of a heartbeat thread while
    the visibility of every other held message ran out. Now an unreachable endpoint ends the
    retries, and all of them share ENTRY_RETRY_BUDGET_S."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    transport = FailedEntries(clock, single, single_s)
    adapter = SqsAdapter(transport, sleep=sleep, clock=lambda: clock[0])
    outcome = adapter.change_visibility_batch("http://q/123/q", [(f"rh{i}", 60) for i in range(10)])
    assert sorted(outcome.failed) == list(range(10)) and not outcome.succeeded
    assert transport.singles <= most_singles, transport.singles


def test_a_fifo_destination_gets_group_and_deduplication_ids(
    adapter: SqsAdapter, sqs_client: Any
) -> None:
    """A FIFO reply_to (or result queue) refused every send without MessageGroupId
    (MissingParameter): the request ran to the DLQ, no answer anywhere. The request's message id
    is both ids now, so a result sent twice (its answer lost, then redelivered) lands once."""
    import uuid

    from worker.contract.wire import result_attributes

    name = f"results-{uuid.uuid4().hex[:8]}.fifo"
    url = sqs_client.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    message = OutgoingMessage('{"id":"r1"}', result_attributes("5f0c-message-id", "r1"))
    for _ in range(2):
        outcome = adapter.send_batch(url, [message])
        assert outcome.succeeded == [0] and outcome.failed == {}, outcome.failed
    got = sqs_client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     AttributeNames=["MessageGroupId"])
    [received] = got["Messages"]
    assert received["Attributes"]["MessageGroupId"] == "5f0c-message-id"


def test_the_regions_a_worker_makes_clients_for_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a region glob in WORKER_REPLY_TO_ALLOW, each request naming a new region made
    three clients and three TLS contexts, kept for good: 150 regions took 425 MiB. Past
    MAX_REGIONS a new region is unreachable (a ReplyToUnreachable answer), nothing made."""
    from worker.sqs import MAX_REGIONS

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    adapter = SqsAdapter.from_environment(region_name=REGION)  # AWS's public endpoint
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(MAX_REGIONS):
        url = f"https://sqs.zz-{letters[i]}test-1.amazonaws.com/123456789012/q"
        assert adapter.for_queue(url) is not adapter
    with pytest.raises(DestinationUnreachable, match=f"more than {MAX_REGIONS} regions"):
        adapter.for_queue("https://sqs.zz-overflow-1.amazonaws.com/123456789012/q")
    assert adapter.for_queue(f"https://sqs.zz-{letters[0]}test-1.amazonaws.com/1/q") is not None
