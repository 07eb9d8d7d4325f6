"""The receivers grow when full receives come back too slowly to feed the model: each brings at
most 10 messages per round trip, so with a slow SQS endpoint (a cross-cloud round trip) a fixed
few of them bring the requests about as fast as the model takes them, and every batch is formed
from the few that just arrived."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
from worker_test_helpers import (
    REGION,
    FakeRunner,
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    start_worker,
    wait_for,
)

from worker.pipeline import Worker
from worker.pipeline.capacity import RECEIVE_HEADROOM, CapacityEstimator, receivers_for
from worker.pipeline.ledger import Ledger
from worker.pipeline.observer import NullObserver
from worker.pipeline.receiver import Receivers
from worker.seams import Encoded, ReceivedMessage
from worker.sqs import SqsAdapter
from worker.sqs_transport import SqsApiError

FORWARD_S = 0.1  # per batch of 10: the model takes 100 messages a second


class TimedRunner(FakeRunner):
    """The fake model, with a device that takes FORWARD_S per batch (the simulated device time
    the chaos tests use too)."""

    def run(self, prepared: list[Encoded]) -> list[Any]:
        time.sleep(FORWARD_S)
        return super().run(prepared)


class SlowReceives:
    """The real adapter; every ReceiveMessage takes `delay_s` longer (a far-away endpoint)."""

    def __init__(self, adapter: SqsAdapter, delay_s: float) -> None:
        self.adapter = adapter
        self.delay_s = delay_s
        self.failing = threading.Event()  # set: every receive fails (an outage)
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def receive(self, queue_url: str, **options: Any) -> list[ReceivedMessage]:
        time.sleep(self.delay_s)  # the round trip itself, not a wait for anything
        if self.failing.is_set():
            self.failed += 1
            raise ConnectionError("SQS unreachable (test outage)")
        return self.adapter.receive(queue_url, **options)


def run_backlog(
    endpoint: str, client: Any, running_workers: list[Worker], delay_s: float, **settings: Any
) -> tuple[Worker, Any]:
    queues = make_queues(client)
    send_bodies(client, queues.input, [request(f"r {i}", id=f"r{i}") for i in range(200)])
    adapter = SqsAdapter.from_environment(endpoint_url=endpoint, region_name=REGION)
    worker = start_worker(
        endpoint, queues, TimedRunner(), running_workers, sqs=SlowReceives(adapter, delay_s),
        max_batch_size=10, receivers=1, **settings,
    )
    return worker, queues


def receives(worker: Worker) -> SlowReceives:
    sqs = worker.sqs
    assert isinstance(sqs, SlowReceives)
    return sqs


def answered_all(worker: Worker, client: Any, queues: Any) -> None:
    assert len(ResultReader(client, queues.results).wait_for(200, 60)) == 200
    wait_for(lambda: counts(client, queues.input) == (0, 0), 30, "every request deleted")


def test_receivers_are_added_while_slow_full_receives_starve_the_model(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    # 100 msgs/s x 4 x 0.1 s / 10 per receive: 4 wanted, capped at 3
    worker, queues = run_backlog(
        sqs_server.endpoint_url, sqs_client, running_workers, 0.1, max_receivers=3
    )
    wait_for(lambda: len(worker.receivers.threads) == 3, 30, "two receivers added")
    answered_all(worker, sqs_client, queues)
    assert len(worker.receivers.threads) == 3


def test_receivers_stay_at_the_configured_count_where_sqs_answers_fast(
    fauxqs_server: Any, running_workers: list[Worker]
) -> None:
    # 100 msgs/s x 4 x a few ms / 10 per receive: fewer than one receiver wanted (it would take
    # 25 ms round trips for a second)
    client = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url, region_name=REGION)
    worker, queues = run_backlog(fauxqs_server.endpoint_url, client, running_workers, 0.0)
    answered_all(worker, client, queues)
    assert len(worker.receivers.threads) == 1


def test_max_receivers_equal_to_receivers_keeps_the_count_fixed(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    worker, queues = run_backlog(
        sqs_server.endpoint_url, sqs_client, running_workers, 0.1, max_receivers=1
    )
    answered_all(worker, sqs_client, queues)
    assert len(worker.receivers.threads) == 1


def test_receivers_wanted_follow_the_rate_and_the_round_trip() -> None:
    assert RECEIVE_HEADROOM == 4.0
    assert receivers_for(throughput_msgs_s=600, round_trip_s=0.055, per_receive=10) == 14
    assert receivers_for(throughput_msgs_s=600, round_trip_s=0.003, per_receive=10) == 1
    assert receivers_for(throughput_msgs_s=5000, round_trip_s=0.055, per_receive=10) == 110
    capacity = CapacityEstimator(
        configured=0, visibility_timeout_s=60, max_batch_size=32, receivers=4
    )
    assert capacity.receivers_wanted(0.05, 10) is None  # no rate known yet
    capacity.record_batch(32, 0.1)  # the model: 320 messages per model-second
    assert capacity.receivers_wanted(0.05, 10) is None  # none has left yet
    capacity.record_departures([(1.0, 1000)] * 10)  # found 1000 held, left after 1 s: 1000/s
    assert capacity.receivers_wanted(0.05, 10) == 7  # the model's 320: 6.4
    slow = CapacityEstimator(configured=0, visibility_timeout_s=60, max_batch_size=32,
                             receivers=4)
    slow.record_batch(32, 0.1)
    slow.record_departures([(1.0, 100)] * 10)  # 100 msgs/s leave: the pipeline sets the rate
    assert slow.receivers_wanted(0.05, 10) == 2  # 4 x 100 x 0.05 / 10


def test_added_receivers_end_at_their_first_failed_receive(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """Grown for a slow endpoint, the receivers would all poll it through an outage: each added
    one ends at its first failure instead, and the configured one polls on (pausing between
    tries), the worker healthy throughout; they grow back once receives come back full."""
    worker, queues = run_backlog(
        sqs_server.endpoint_url, sqs_client, running_workers, 0.1, max_receivers=3
    )
    wait_for(lambda: len(worker.receivers.threads) == 3, 30, "two receivers added")
    sqs = receives(worker)
    sqs.failing.set()
    wait_for(lambda: len(worker.receivers.threads) == 1, 30, "the added receivers to end")
    assert worker.healthy()
    failed = sqs.failed
    wait_for(lambda: sqs.failed > failed, 30, "the configured receiver to try again")
    assert len(worker.receivers.threads) == 1 and worker.healthy()
    sqs.failing.clear()
    wait_for(lambda: len(worker.receivers.threads) == 3, 30, "receivers added again")
    answered_all(worker, sqs_client, queues)


class HandsOverTen:
    """The queue seam: one receive brings 10 messages in 50 ms, later ones wait until `done`,
    empty."""

    calls = 0

    def __init__(self) -> None:
        self.handed = 0
        self.done = threading.Event()

    def receive(self, queue_url: str, **options: Any) -> list[ReceivedMessage]:
        if self.handed:
            self.done.wait(10)
            return []
        time.sleep(0.05)  # the round trip (the growth is asked for by a slow one)
        self.handed = 10
        return [ReceivedMessage(queue_url, f"m{i}", f"h{i}", "{}", 1, None) for i in range(10)]


def test_messages_a_receive_brought_are_held_even_when_no_receiver_can_be_added() -> None:
    """A full receive may start another receiver; when that failed (can't start new thread,
    under a pids limit) it was taken for a failed receive: the reservation was cancelled and
    the 10 messages SQS had handed over were never held (invisible until their timeout)."""
    sqs, ledger = HandsOverTen(), Ledger()
    capacity = CapacityEstimator(
        configured=0, visibility_timeout_s=60, max_batch_size=8, receivers=1
    )
    capacity.record_batch(8, 0.001)  # a fast model: another receiver is wanted
    capacity.record_departures([(0.001, 1)])
    handed: list[Any] = []
    receivers = Receivers(
        sqs, ledger, capacity, NullObserver(), handed.extend, queue_url="q", wait_s=20,
        visibility_s=60, count=1, max_count=4,
    )
    started: list[threading.Thread] = []

    def spawn(name: str, body: Any) -> threading.Thread:
        if started:
            raise RuntimeError("can't start new thread")
        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        started.append(thread)
        return thread

    receivers.start(spawn)
    try:
        wait_for(lambda: ledger.held == 10 and len(handed) == 10, 10, "the 10 messages held")
    finally:
        ledger.close()
        sqs.done.set()
        started[0].join(10)


class ReceivesRefused:
    """The real adapter, every ReceiveMessage refused as without sqs:ReceiveMessage."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def receive(self, *args: Any, **kwargs: Any) -> Any:
        self.refused += 1
        raise SqsApiError("AccessDenied", "not authorized to perform sqs:ReceiveMessage", 403)


def test_a_worker_whose_receives_all_fail_turns_not_ready(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """Every ReceiveMessage failed (the role lacks sqs:ReceiveMessage) and /readyz stayed green:
    a rollout took the new pod for ready and drained the old ones."""
    from worker.pipeline import receiver

    queues = make_queues(sqs_client)
    sqs = ReceivesRefused(
        SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    )
    worker = start_worker(sqs_server.endpoint_url, queues, FakeRunner(), running_workers, sqs=sqs,
                          receivers=1)
    worker.receivers._unready_after_s = 1.0  # of receiver.UNREADY_AFTER_S (30 s)
    assert receiver.UNREADY_AFTER_S == 30.0
    wait_for(lambda: sqs.refused >= 3, 30, "refused receives")
    assert worker.healthy()  # not a restart: the pod is fine, its access is not
    assert not worker.ready()
