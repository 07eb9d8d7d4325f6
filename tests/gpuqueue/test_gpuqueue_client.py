"""The client against real local servers (fauxqs and moto for SQS, moto for S3): submit_many's
batches, results() following S3 pointers and dropping duplicates, the temporary reply queue and
sweep, and the inbox keeping results for other waiters. End to end with a worker:
tests/worker/test_client_e2e.py."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import boto3
import pytest

from gpuqueue import Client, Result
from gpuqueue.reply_queue import EXPIRES_TAG, ReplyQueue, sweep
from gpuqueue.results import Inbox
from worker.contract.request import RequestV1
from worker.contract.result import build_result, result_message
from worker.contract.wire import s3_pointer_message

REGION = "us-east-1"


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message on a queue (deleted as read), until a receive comes back empty."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return out
        out += got
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
        ])


def put_result(sqs: Any, queue_url: str, message_id: str, request_id: str, **kw: Any) -> None:
    message = result_message(
        build_result(message_id=message_id, request_id=request_id, model="m", **kw)
    )
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=message.body, MessageAttributes=message.attributes
    )


@pytest.fixture
def client_for(sqs_server: Any) -> Any:
    def make(queue_url: str, result_queue_url: str | None = None, **kw: Any) -> Client:
        return Client(queue_url, result_queue_url, endpoint_url=sqs_server.endpoint_url, **kw)

    return make


def test_submit_many_sends_every_request_once_with_ids_and_fields(
    sqs_client: Any, client_for: Any
) -> None:
    queue = sqs_client.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    client = client_for(queue)
    texts = [f"text {i} " + "w" * (i * 500) for i in range(25)]  # several calls by count
    ids = client.submit_many(
        [{"inputs": t, "ttl_s": 30, "id": f"r{i}"} if i % 2 else t for i, t in enumerate(texts)]
    )
    assert len(ids) == 25 and len(set(ids)) == 25
    assert ids[1] == "r1" and uuid.UUID(ids[0])  # given ids kept, others uuid4
    bodies = [RequestV1.model_validate_json(m["Body"]) for m in drain(sqs_client, queue)]
    assert sorted(b.id for b in bodies) == sorted(ids)  # each exactly once
    by_id = {b.id: b for b in bodies}
    assert by_id["r1"].ttl_s == 30 and by_id["r1"].inputs == texts[1]
    assert by_id[ids[0]].ttl_s is None and by_id[ids[0]].reply_to is None


def test_a_bad_request_fails_before_anything_is_sent(sqs_client: Any, client_for: Any) -> None:
    queue = sqs_client.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    client = client_for(queue)
    with pytest.raises(ValueError, match="request 1: ttl_s"):
        client.submit_many(["fine", {"inputs": "x", "ttl_s": -1}])
    with pytest.raises(ValueError, match="request 0: inputs"):
        client.submit(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bytes; the queue takes"):
        client.submit_many(["x" * 1_100_000])  # over 1 MiB, the default limit
    assert drain(sqs_client, queue) == []


def test_submit_to_a_missing_queue_reports_every_id(client_for: Any, sqs_server: Any) -> None:
    from gpuqueue import SubmitFailed

    missing = sqs_server.endpoint_url + "/000000000000/" + name("nope")
    with pytest.raises(SubmitFailed) as failed:
        client_for(missing).submit_many(["a", "b", "c"])
    assert len(failed.value.failed) == 3 and failed.value.sent == []


def test_results_follow_s3_pointers_drop_duplicates_and_delete_what_they_yield(
    sqs_client: Any, s3_client: Any, moto_server: Any, sqs_server: Any
) -> None:
    results_q = sqs_client.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    bucket = name("gq-big")
    s3_client.create_bucket(Bucket=bucket)
    put_result(sqs_client, results_q, "m1", "a", outputs=[[1.0, 2.0]])
    put_result(sqs_client, results_q, "m1", "a", outputs=[[1.0, 2.0]])  # a redelivery's duplicate
    put_result(sqs_client, results_q, "m2", "b", error=("InputTooLong", "too long"))
    big = result_message(build_result(message_id="m3", request_id="c", model="m",
                                      outputs=["y" * 5000]))
    s3_client.put_object(Bucket=bucket, Key="k3", Body=big.body.encode())
    pointer = s3_pointer_message(big, bucket, "k3")
    sqs_client.send_message(QueueUrl=results_q, MessageBody=pointer.body,
                            MessageAttributes=pointer.attributes)
    # S3 on moto, SQS on either emulator: one session, two endpoints
    client = Client(results_q, results_q, endpoint_url=sqs_server.endpoint_url)
    client.s3 = boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    got = {r.id: r for r in client.results(wait_s=1)}
    assert set(got) == {"a", "b", "c"}
    assert isinstance(got["a"], Result) and got["a"].ok and got["a"].outputs == [[1.0, 2.0]]
    assert not got["b"].ok and got["b"].error is not None and got["b"].error.type == "InputTooLong"
    assert got["c"].outputs == ["y" * 5000]
    assert drain(sqs_client, results_q) == []  # yielded ones deleted, the duplicate too
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # payload deleted


def test_stopping_early_puts_the_unread_results_back(sqs_client: Any, client_for: Any) -> None:
    results_q = sqs_client.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    for i in range(5):
        put_result(sqs_client, results_q, f"m{i}", f"r{i}", outputs=[i])
    client = client_for(results_q, results_q)
    first = next(iter(client.results(wait_s=1, max_results=1)))
    left = drain(sqs_client, results_q)  # the rest is visible again at once, not after 30 s
    assert len(left) >= 1 and first.id not in {json.loads(m["Body"])["id"] for m in left}



def test_results_put_back_are_yielded_by_the_next_call(sqs_client: Any, client_for: Any) -> None:
    """Every result of a receive was marked seen before any was yielded: the rest, put back
    when the caller stopped early, came to the next results() call as "duplicates" and was
    deleted unread (results(max_results=1) ten times yielded one of ten)."""
    results_q = sqs_client.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    for i in range(10):
        put_result(sqs_client, results_q, f"m{i}", f"r{i}", outputs=[i])
    client = client_for(results_q, results_q)
    got: list[str] = []
    for _ in range(30):
        got += [r.id or "" for r in client.results(wait_s=1, max_results=1)]
        if len(got) == 10:
            break
    assert sorted(got) == sorted(f"r{i}" for i in range(10))
    assert client._reader(results_q).duplicates == 0


def test_waiting_calls_split_long_texts_by_size_and_name_a_bad_one_by_its_index(
    sqs_client: Any, client_for: Any
) -> None:
    """embed() split only by count: 32 texts of 10 KB made one 327 KB request, which a 256 KiB
    queue refused (InvalidRequest "request 0 ... split its inputs", though each text fits and
    the caller has no say in the split); and a bad texts[35] was named "request 1 ... inputs.3"."""
    from gpuqueue.errors import InvalidRequest

    requests_q = sqs_client.create_queue(
        QueueName=name("gq-in"), Attributes={"MaximumMessageSize": "262144"}
    )["QueueUrl"]
    client = client_for(requests_q, requests_q)
    texts = [f"document {i}: " + "lorem ipsum " * 850 for i in range(40)]  # ~10 KB each
    fields = {"task": "embed", "reply_to": requests_q, "ttl_s": 60}
    requests = client._split(texts, fields)
    assert [t for r in requests for t in r.inputs] == texts
    assert len(requests) == 3 and [len(r.inputs) for r in requests] == [16, 16, 8]
    assert max(len(r.model_dump_json(exclude_none=True).encode()) for r in requests) <= 262144
    with pytest.raises(InvalidRequest) as bad:
        client.embed(["ok"] * 35 + ["bad \ud800"], timeout_s=5)
    assert bad.value.index == 35 and "input 35: a lone surrogate" in str(bad.value)
    with pytest.raises(InvalidRequest) as huge:
        client.embed(["ok", "x" * 300_000], timeout_s=5)
    assert huge.value.index == 1 and "input 1 makes a" in str(huge.value)
    assert drain(sqs_client, requests_q) == []  # nothing was sent


@pytest.mark.parametrize("timeout_s", [float("inf"), float("nan"), 0, -1])
def test_a_wait_that_cannot_end_or_cannot_start_is_refused_before_sending(
    sqs_client: Any, client_for: Any, timeout_s: float
) -> None:
    """timeout_s=inf sent the request, then raised OverflowError in the wait: the result was
    left for nobody."""
    requests_q = sqs_client.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    client = client_for(requests_q, requests_q)
    with pytest.raises(ValueError, match="timeout_s"):
        client.embed(["a"], timeout_s=timeout_s, ttl_s=600)
    assert drain(sqs_client, requests_q) == []


def test_a_receive_of_only_duplicates_does_not_end_the_results(
    sqs_client: Any, client_for: Any
) -> None:
    """A worker restart redelivered ten answered requests: their duplicate results came first.
    results() took the receive that brought only those (dropped) for an empty queue and ended,
    yielding none of the five results behind them."""
    results_q = sqs_client.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    for i in range(10):
        put_result(sqs_client, results_q, f"m{i}", f"r{i}", outputs=[i])
    client = client_for(results_q, results_q)
    assert len(list(client.results(wait_s=1, max_results=10))) == 10
    for i in range(10):  # the duplicates, then five new results
        put_result(sqs_client, results_q, f"m{i}", f"r{i}", outputs=[i])
    for i in range(10, 15):
        put_result(sqs_client, results_q, f"m{i}", f"r{i}", outputs=[i])
    got = [r.id for r in client.results(wait_s=1, max_results=5)]
    assert sorted(got) == [f"r{i}" for i in range(10, 15)]


def test_a_slow_consumer_keeps_what_it_has_not_reached_hidden(
    sqs_client: Any, client_for: Any
) -> None:
    """Results were deleted only after the consumer had taken all ten of a receive, and
    nothing extended their visibility: a consumer slower than the queue's visibility timeout
    over them let every one become visible, and another replica handled them all again."""
    results_q = sqs_client.create_queue(
        QueueName=name("gq-out"), Attributes={"VisibilityTimeout": "2"}
    )["QueueUrl"]
    for i in range(3):
        put_result(sqs_client, results_q, f"m{i}", f"r{i}", outputs=[i])
    client = client_for(results_q, results_q)
    seen_by_another: list[dict[str, Any]] = []
    handled = []
    for result in client.results(wait_s=1, max_results=3):
        handled.append(result.id)
        time.sleep(1.2)  # the consumer's work on each result: 3.6 s over a 2 s timeout
        seen_by_another += sqs_client.receive_message(
            QueueUrl=results_q, WaitTimeSeconds=0, VisibilityTimeout=60
        ).get("Messages", [])
    assert len(handled) == 3
    assert seen_by_another == []
    assert drain(sqs_client, results_q) == []  # and each was deleted


def test_a_duplicate_claim_check_whose_payload_is_gone_is_dropped_not_raised(
    sqs_client: Any, s3_client: Any, moto_server: Any, sqs_server: Any
) -> None:
    """A pointer delivered twice: the first copy was read and its payload deleted. The second
    raised NoSuchKey out of every receive, for ever, and the results read with it were lost."""
    results_q = sqs_client.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    bucket = name("gq-big")
    s3_client.create_bucket(Bucket=bucket)
    big = result_message(build_result(message_id="m1", request_id="big", model="m",
                                      outputs=["y" * 5000]))
    s3_client.put_object(Bucket=bucket, Key="k1", Body=big.body.encode())
    pointer = s3_pointer_message(big, bucket, "k1")
    client = Client(results_q, results_q, endpoint_url=sqs_server.endpoint_url)
    client.s3 = boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name=REGION)

    def send_pointer() -> None:
        sqs_client.send_message(QueueUrl=results_q, MessageBody=pointer.body,
                                MessageAttributes=pointer.attributes)

    send_pointer()
    assert [r.id for r in client.results(wait_s=1)] == ["big"]  # read; its payload deleted
    send_pointer()  # the duplicate, with a result beside it
    put_result(sqs_client, results_q, "m2", "other", outputs=[2])
    assert [r.id for r in client.results(wait_s=1)] == ["other"]
    assert drain(sqs_client, results_q) == []  # the duplicate deleted unread
    # a pointer nobody has read whose payload is gone: logged, left, and the rest still read
    gone = s3_pointer_message(result_message(build_result(
        message_id="m3", request_id="lost", model="m", outputs=["z" * 5000])), bucket, "nope")
    sqs_client.send_message(QueueUrl=results_q, MessageBody=gone.body,
                            MessageAttributes=gone.attributes)
    put_result(sqs_client, results_q, "m4", "fine", outputs=[4])
    assert [r.id for r in client.results(wait_s=1)] == ["fine"]

def test_the_temporary_reply_queue_is_tagged_deleted_on_close_and_swept_when_left(
    sqs_client: Any, client_for: Any
) -> None:
    prefix = name("gq-reply") + "-"
    with client_for("unused", reply_queue_prefix=prefix, reply_queue_ttl_s=600) as client:
        url = client._reply_queue.ensure()
        tags = sqs_client.list_queue_tags(QueueUrl=url)["Tags"]
        assert abs(float(tags[EXPIRES_TAG]) - (time.time() + 600)) < 30
    assert url not in sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    # what a crashed client leaves: one expired, one still valid, one untagged
    expired = sqs_client.create_queue(QueueName=prefix + "old", tags={EXPIRES_TAG: "1000"})
    valid = sqs_client.create_queue(
        QueueName=prefix + "new", tags={EXPIRES_TAG: str(int(time.time()) + 3600)}
    )
    untagged = sqs_client.create_queue(QueueName=prefix + "other")
    assert [s.deleted for s in sweep(sqs_client, prefix=prefix, dry_run=True)] == [False] * 3
    swept = {s.queue_url.rsplit("/", 1)[1]: s.deleted for s in sweep(sqs_client, prefix=prefix)}
    assert swept == {prefix + "old": True, prefix + "new": False, prefix + "other": False}
    left = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    assert {u.rsplit("/", 1)[1] for u in left} == {prefix + "new", prefix + "other"}
    assert expired and valid and untagged


def test_a_reply_queue_swept_while_the_client_was_idle_is_made_anew(sqs_client: Any) -> None:
    """A process idle past its reply queue's expiry (a weekend, with the 24 h default) had the
    queue swept; its next wait tagged the queue that was gone and failed, and since the expiry
    was moved first, every later call sent requests whose reply_to no longer existed."""
    prefix = name("gq-reply") + "-"
    now = [time.time()]
    replaced: list[str] = []
    queue = ReplyQueue(sqs_client, prefix=prefix, ttl_s=100, clock=lambda: now[0],
                       on_replaced=replaced.append)
    first = queue.ensure()
    now[0] += 101  # idle past the expiry
    assert [s.deleted for s in sweep(sqs_client, prefix=prefix, now=now[0])] == [True]
    second = queue.ensure()
    assert second != first and replaced == [first]
    tags = sqs_client.list_queue_tags(QueueUrl=second)["Tags"]
    assert float(tags[EXPIRES_TAG]) == pytest.approx(now[0] + 100, abs=2)
    # deleted under a client whose expiry had not passed: the renewal finds it gone
    sqs_client.delete_queue(QueueUrl=second)
    now[0] += 60  # past half the ttl: renewed on this call
    third = queue.ensure()
    assert third not in (first, second) and replaced == [first, second]
    sqs_client.get_queue_attributes(QueueUrl=third)  # it exists
    queue.delete()


def test_a_wait_that_finds_the_reply_queue_gone_makes_the_next_call_use_a_new_one(
    sqs_client: Any, client_for: Any
) -> None:
    requests_q = sqs_client.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    prefix = name("gq-reply") + "-"
    with client_for(requests_q, reply_queue_prefix=prefix) as client:
        gone = client._reply_queue.ensure()
        sqs_client.delete_queue(QueueUrl=gone)
        with pytest.raises(Exception) as failed:
            client.embed(["hello"], timeout_s=5)
        assert "NonExistentQueue" in str(failed.value) or "QueueDoesNotExist" in str(failed.value)
        assert client.reply_queue_url is None and gone not in client._readers
        assert client._reply_queue.ensure() != gone


def test_waiters_share_one_queue_and_results_for_strangers_go_back(
    sqs_client: Any, client_for: Any
) -> None:
    results_q = sqs_client.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    client = client_for(results_q, results_q)
    inbox = Inbox(client._reader(results_q))
    inbox.expect(["late"])  # sent by this process, not awaited yet
    put_result(sqs_client, results_q, "m-b", "b", outputs=[2])
    put_result(sqs_client, results_q, "m-a", "a", outputs=[1])
    put_result(sqs_client, results_q, "m-late", "late", outputs=[3])
    put_result(sqs_client, results_q, "m-x", "stranger", outputs=[0])
    got: dict[str, Any] = {}
    other = threading.Thread(target=lambda: got.update(inbox.wait_for(["b"], 20)))
    other.start()
    mine = inbox.wait_for(["a"], 20)
    other.join(30)
    assert mine["a"].outputs == [1] and got["b"].outputs == [2]
    assert inbox.wait_for(["late"], 1)["late"].outputs == [3]  # kept for a later waiter
    # the stranger's result was put back for its owner, not deleted
    left = []
    deadline = time.monotonic() + 15
    while not left and time.monotonic() < deadline:
        left = drain(sqs_client, results_q)
    assert [json.loads(m["Body"])["id"] for m in left] == ["stranger"]


class CountingS3:
    """moto's S3, counting the payloads fetched."""

    def __init__(self, s3: Any) -> None:
        self.s3, self.fetched = s3, 0

    def get_object(self, **kw: Any) -> Any:
        self.fetched += 1
        return self.s3.get_object(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)


def test_a_waiter_does_not_fetch_the_claim_checks_of_results_for_others(
    moto_server: Any
) -> None:
    """Every foreign result was read, its S3 payload fetched, then put back for 2 s: a process
    waiting on a shared queue downloaded each other process's large payloads every 2 s for as
    long as it waited. The request-id attribute says whose each is, before any read."""
    sqs = boto3.client("sqs", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    results_q = sqs.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    bucket = name("gq-big")
    s3.create_bucket(Bucket=bucket)
    for i in range(3):
        big = result_message(build_result(message_id=f"m{i}", request_id=f"theirs-{i}",
                                          model="m", outputs=["y" * 5000]))
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=big.body.encode())
        pointer = s3_pointer_message(big, bucket, f"k{i}")
        sqs.send_message(QueueUrl=results_q, MessageBody=pointer.body,
                         MessageAttributes=pointer.attributes)
    client = Client(results_q, results_q, endpoint_url=moto_server.endpoint_url)
    counting = CountingS3(s3)
    client.s3 = counting
    inbox = Inbox(client._reader(results_q))
    put_result(sqs, results_q, "m-mine", "mine", outputs=[1])
    assert inbox.wait_for(["mine"], 20)["mine"].outputs == [1]
    assert inbox.wait_for(["never"], 3) == {}  # waiting on while the foreign ones come round
    assert counting.fetched == 0
    left: list[dict[str, Any]] = []  # theirs are still there, for their owners (after 2 s)
    deadline = time.monotonic() + 15
    while len(left) < 3 and time.monotonic() < deadline:
        left += drain(sqs, results_q)
    assert sorted(m["MessageAttributes"]["gpuqueue-request-id"]["StringValue"] for m in left) \
        == ["theirs-0", "theirs-1", "theirs-2"]


def test_threads_waiting_at_once_share_one_reply_queue(sqs_client: Any, client_for: Any) -> None:
    """ensure() had no lock: four threads' first waits made four reply queues, and close()
    deleted the last one only (the others were left for the sweep, a day later)."""
    from gpuqueue import ResultTimeout

    queue = sqs_client.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    prefix = name("gq-reply") + "-"
    client = client_for(queue, reply_queue_prefix=prefix)
    barrier = threading.Barrier(4)

    def wait() -> None:
        barrier.wait()
        with pytest.raises(ResultTimeout):
            client.embed("hello", timeout_s=1)

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    made = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    client.close()
    left = sqs_client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    assert len(made) == 1 and left == []


def test_text_sqs_would_refuse_raw_is_sent_escaped(sqs_client: Any, client_for: Any) -> None:
    """U+FFFE and U+FFFF are legal JSON but outside what SQS takes (fauxqs refuses them as SQS
    documents: InvalidMessageContents): they were sent raw and refused. A lone surrogate cannot
    be sent at all: refused before anything is sent, naming the request."""
    queue = sqs_client.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    client = client_for(queue)
    text = "before \ufffe between \uffff after"
    [request_id] = client.submit_many([text])
    [message] = drain(sqs_client, queue)
    body = RequestV1.model_validate_json(message["Body"])
    assert (body.id, body.inputs) == (request_id, text)
    with pytest.raises(ValueError, match=r"request 1 .*lone surrogate"):
        client.submit_many(["fine", "broken \ud800"])
    assert drain(sqs_client, queue) == []


class DeletesFail:
    """The SQS seam, plain: one receive's messages as given; every delete fails (throttled)."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    def receive_message(self, **_: Any) -> dict[str, Any]:
        return {"Messages": self.messages}

    def delete_message(self, **_: Any) -> None:
        raise ConnectionError("throttled")

    def delete_message_batch(self, **_: Any) -> None:
        raise ConnectionError("throttled")


def test_a_duplicate_that_cannot_be_deleted_does_not_cost_its_batch_mates() -> None:
    """A failed delete of a duplicate raised out of receive(): the results before it in the
    receive, already marked seen, were never returned, and were dropped as duplicates when
    they came back (a pure unit test of the reader's loop: the seam is a plain object)."""
    from gpuqueue.results import ResultReader

    def message(message_id: str, request_id: str, handle: str) -> dict[str, Any]:
        out = result_message(build_result(message_id=message_id, request_id=request_id,
                                          model="m", outputs=[1]))
        return {"MessageId": handle, "ReceiptHandle": handle, "Body": out.body,
                "MessageAttributes": dict(out.attributes)}

    sqs = DeletesFail([message("m2", "fresh", "h2"), message("m1", "again", "h1")])
    reader = ResultReader(sqs, None, "q")
    assert reader.first_time("m1")  # m1's result was handed over before
    assert [r.result.id for r in reader.receive(0)] == ["fresh"]
    assert reader.duplicates == 1


def test_a_result_with_a_lone_surrogate_escape_is_read_not_left_on_the_queue(
    sqs_client: Any, client_for: Any
) -> None:
    """A 0.1 worker quoted a request's lone surrogate in an error message as the escape
    \\ud800 (valid JSON, not valid Unicode). pydantic's JSON parser refuses it, so the result
    was logged as "not a gpuqueue result" and left on the queue for good (a poison message on a
    shared queue). It is read through Python's json now, yielded and deleted like any other."""
    results_q = sqs_client.create_queue(QueueName=name("gq-sur"))["QueueUrl"]
    result = build_result(message_id="m1", request_id="a", model="m",
                          error=("InvalidParameters", "unknown parameter(s): x"))
    body = json.dumps(result).replace("unknown parameter(s): x", "unknown parameter(s): \\ud800")
    sqs_client.send_message(QueueUrl=results_q, MessageBody=body,
                            MessageAttributes=result_message(result).attributes)
    client = client_for(results_q, results_q)
    [got] = list(client.results(wait_s=1))
    assert got.id == "a" and not got.ok and got.error is not None
    assert got.error.message == "unknown parameter(s): \ud800"
    assert drain(sqs_client, results_q) == []
