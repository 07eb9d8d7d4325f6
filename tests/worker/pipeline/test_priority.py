"""Several input queues: strict priority (a lower queue is read only when the higher ones
returned nothing) and weighted polling, the order under load against real local SQS servers,
deletes going back to each message's own queue, and PollOrder's pure logic."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from worker_test_helpers import (
    REGION,
    FakeRunner,
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    start_worker,
    unique,
    wait_for,
)

from worker.metrics import Metrics
from worker.pipeline import Worker
from worker.pipeline.polling import PollOrder
from worker.seams import ReceivedMessage
from worker.sqs import SqsAdapter


class RecordingSqs:
    """The real adapter, with every receive that returned messages written down in order."""

    def __init__(self, endpoint: str) -> None:
        self._sqs = SqsAdapter.from_environment(endpoint_url=endpoint, region_name=REGION)
        self._lock = threading.Lock()
        self.receives: list[tuple[str, int]] = []  # (queue URL, messages)
        self.waits: list[tuple[str, int]] = []  # (queue URL, WaitTimeSeconds) of every call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def receive(self, queue_url: str, **kwargs: Any) -> list[ReceivedMessage]:
        messages = self._sqs.receive(queue_url, **kwargs)
        with self._lock:
            self.waits.append((queue_url, kwargs["wait_s"]))
            if messages:
                self.receives.append((queue_url, len(messages)))
        return messages


def two_queues(client: Any) -> tuple[Any, str]:
    queues = make_queues(client)
    low = client.create_queue(QueueName=unique("gq-low"))["QueueUrl"]
    return queues, low


def test_strict_priority_reads_the_lower_queue_only_once_the_higher_is_empty(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues, low = two_queues(sqs_client)
    n = 30
    send_bodies(sqs_client, queues.input, [request(f"high {i}", id=f"h{i}") for i in range(n)])
    send_bodies(sqs_client, low, [request(f"low {i}", id=f"l{i}") for i in range(n)])
    sqs = RecordingSqs(sqs_server.endpoint_url)
    metrics = Metrics()
    start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers, metrics, sqs=sqs,
        queue_url="", queue_urls=f"{queues.input},{low}", buffer_max=10, max_batch_size=5,
    )
    results = ResultReader(sqs_client, queues.results).wait_for(2 * n, timeout=90)
    assert all(r["status"] == "ok" for r in results.values())
    order = [url for url, _ in sqs.receives]
    first_low = order.index(low)
    # every high-priority message was admitted before the first low-priority receive
    assert sum(k for url, k in sqs.receives[:first_low] if url == queues.input) == n
    assert queues.input not in order[first_low:]
    # deletes went to each message's own queue
    wait_for(lambda: counts(sqs_client, queues.input) == (0, 0), 15, "high queue empty")
    wait_for(lambda: counts(sqs_client, low) == (0, 0), 15, "low queue empty")
    by_queue = metrics.received_by_queue
    assert by_queue.labels(queue=queues.input.rsplit("/", 1)[1])._value.get() == n
    assert by_queue.labels(queue=low.rsplit("/", 1)[1])._value.get() == n


def test_weighted_polling_serves_the_lower_queue_while_the_higher_has_a_backlog(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues, low = two_queues(sqs_client)
    n = 40
    send_bodies(sqs_client, queues.input, [request(f"high {i}") for i in range(n)])
    send_bodies(sqs_client, low, [request(f"low {i}") for i in range(n)])
    sqs = RecordingSqs(sqs_server.endpoint_url)
    start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers, sqs=sqs,
        queue_url="", queue_urls=f"{queues.input},{low}", queue_weights="3,1",
        buffer_max=10, max_batch_size=5,
    )
    ResultReader(sqs_client, queues.results).wait_for(2 * n, timeout=90)
    # while both queues had messages (the first 8 receives), one in four went to the low one
    # while the high queue still had messages (up to its last receive), about one receive in
    # four went to the low one (3:1); strict priority would have given it none
    order = [url for url, _ in sqs.receives]
    last_high = len(order) - 1 - order[::-1].index(queues.input)
    shares = Counter(order[: last_high + 1])
    assert 1 <= shares[low] <= shares[queues.input] // 3 + 1, shares


def test_an_idle_worker_long_polls_every_queue(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """With nothing to read, receiver i long-polls queue i mod n: a message on the low queue is
    picked up by a long poll, not after another queue's 20 s wait."""
    queues, low = two_queues(sqs_client)
    sqs = RecordingSqs(sqs_server.endpoint_url)
    start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers, sqs=sqs,
        queue_url="", queue_urls=f"{queues.input},{low}", receivers=2,
    )
    wait_for(
        lambda: {url for url, wait in sqs.waits if wait > 0} == {queues.input, low},
        30,
        "a long poll on each queue",
    )
    send_bodies(sqs_client, low, [request("low and alone", id="alone")])
    results = ResultReader(sqs_client, queues.results).wait_for(1, timeout=30)
    assert [r["id"] for r in results.values()] == ["alone"]


# ----------------------------------------------------------------------------- pure logic


def test_strict_order_is_priority_order_every_time() -> None:
    order = PollOrder(["a", "b", "c"])
    assert all(order.sweep() == ["a", "b", "c"] for _ in range(5))
    assert [order.idle_queue(i) for i in range(4)] == ["a", "b", "c", "a"]
    assert PollOrder(["only"]).single


def test_weighted_order_picks_first_queues_in_proportion_then_the_rest_by_priority() -> None:
    order = PollOrder(["a", "b", "c"], weights=[5, 2, 1])
    sweeps = [order.sweep() for _ in range(80)]
    firsts = Counter(s[0] for s in sweeps)
    assert firsts == {"a": 50, "b": 20, "c": 10}  # exact over whole rounds
    for s in sweeps:
        assert sorted(s) == ["a", "b", "c"]
        rest: Sequence[str] = s[1:]
        assert list(rest) == [q for q in ("a", "b", "c") if q != s[0]]
    # smooth: the lowest weight is never picked twice in a row, nor starved for a whole round
    picks = [s[0] for s in sweeps]
    assert all(picks[i : i + 8].count("c") == 1 for i in range(0, 80, 8))
