"""Heartbeats: on their own short-timeout client, so a hung SQS endpoint is a counted, logged
failure within seconds; and never landing after a release of the same message."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from worker_test_helpers import (
    Clock,
    FakeRunner,
    make_queues,
    request,
    send_bodies,
    start_worker,
    wait_for,
)

from worker.pipeline import Worker
from worker.pipeline.heartbeater import Heartbeater
from worker.pipeline.ledger import Ledger
from worker.pipeline.observer import StatsObserver
from worker.seams import BatchOutcome, ReceivedMessage
from worker.sqs import SqsAdapter

REGION = "us-east-1"


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (a hung SQS endpoint)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_hung_endpoint_fails_the_heartbeat_in_seconds_and_counts_it(hung_endpoint: str) -> None:
    adapter = SqsAdapter.from_environment(endpoint_url=hung_endpoint, region_name=REGION)
    ledger = Ledger()
    ledger.admit(
        [ReceivedMessage(f"{hung_endpoint}/000000000000/q", "m", "r", "{}", 1, None)],
        reserved=0,
        visibility_s=0,  # due at once
    )
    stats = StatsObserver()
    beater = Heartbeater(adapter, ledger, stats, visibility_s=60, enabled=True)
    started = time.monotonic()
    assert beater.beat() == 0
    elapsed = time.monotonic() - started
    # 3 attempts x 5 s read timeout, plus botocore's back-off; the long-poll client's 35 s read
    # timeout and 5 attempts (then 3 single retries) would have taken minutes
    assert elapsed < 30, elapsed
    assert (stats.heartbeats, stats.heartbeat_failures) == (0, 1)
    assert not any(job.extending for job in ledger.unstarted())


class HeldExtensions:
    """The real adapter, with visibility *extensions* held until the test lets them go; every
    change's timeouts are recorded in order."""

    def __init__(self, adapter: SqsAdapter) -> None:
        self.adapter = adapter
        self.extension_started = threading.Event()
        self.let_go = threading.Event()
        self.changes: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        timeouts = [t for _, t in changes]
        if any(t > 0 for t in timeouts):
            self.extension_started.set()
            assert self.let_go.wait(30)
        self.changes.append(timeouts)
        return self.adapter.change_visibility_batch(queue_url, changes)


def test_a_release_waits_for_the_extension_in_flight_so_it_is_not_undone(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """A batch held on the device past half its visibility: the heartbeat for it goes out (and
    is held in flight). The batch then ends, one request failing transiently: its release (a
    2 s back-off) must land after that extension, or the extension would hide it for 6 s."""
    queues = make_queues(sqs_client, visibility_s=6)
    gate = threading.Event()
    runner = FakeRunner(gate)
    [_, poisoned] = send_bodies(
        sqs_client, queues.input, [request("fine"), request("POISON then fine")]
    )
    sqs = HeldExtensions(
        SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    )
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, sqs=sqs,
        max_batch_size=2, visibility_timeout_s=6, receivers=1, max_wait_ms=200,
    )
    wait_for(runner.running.is_set, 30, "the batch on the device")
    assert sqs.extension_started.wait(30)  # the heartbeat for both is in flight, and held
    gate.set()  # the batch ends: "fine" is answered, the poisoned one is released (2 s)
    wait_for(lambda: worker.held == 1, 10, "the answered request to be deleted")
    time.sleep(1.0)  # a racing release has its chance to go out first; none may
    assert [c for c in sqs.changes if all(t <= 2 for t in c)] == []
    sqs.let_go.set()
    let_go = time.monotonic()
    wait_for(lambda: worker.held == 0, 10, "the release")
    extension, release = sqs.changes[0], sqs.changes[1]
    assert extension == [6, 6] and release == [2]  # extension first, then the release
    worker.shutdown(timeout_s=5)  # nobody else receives it but the test
    got = wait_for(
        lambda: sqs_client.receive_message(QueueUrl=queues.input, WaitTimeSeconds=1).get(
            "Messages"
        ),
        10,
        "the released message",
    )
    assert got[0]["MessageId"] == poisoned
    assert time.monotonic() - let_go < 5  # its 2 s back-off, not another 6 s timeout


class FirstCallHeld:
    """The queue seam: the first ChangeMessageVisibilityBatch waits until `let_go` (a slow
    endpoint); every call's receipt handles are recorded."""

    calls = 0

    def __init__(self) -> None:
        self.on_the_wire = threading.Event()
        self.let_go = threading.Event()
        self.extended: list[list[str]] = []

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        self.extended.append([handle for handle, _ in changes])
        if len(self.extended) == 1:
            self.on_the_wire.set()
            assert self.let_go.wait(10)
        return BatchOutcome(succeeded=list(range(len(changes))))


def test_a_release_waits_only_for_its_own_call_and_no_later_call_extends_it() -> None:
    """A round marked all its due jobs in flight at once, then sent them 10 a call: a release
    of a job in a later call waited for every call ahead (on a slow endpoint past settle's
    30 s), and then that call still extended the released message: hidden a whole timeout."""
    sqs, clock = FirstCallHeld(), Clock()
    ledger = Ledger(clock)
    jobs = ledger.admit(
        [ReceivedMessage("q", f"m{i}", f"h{i}", "{}", 1, None) for i in range(15)],
        reserved=0, visibility_s=60,
    )
    clock.now = 40.0  # past half: all 15 due, in two calls
    beater = Heartbeater(sqs, ledger, StatsObserver(), visibility_s=60, enabled=True,
                         clock=clock, calls_in_flight=1)  # the second call waits its turn
    beat = threading.Thread(target=beater.beat)
    beat.start()
    assert sqs.on_the_wire.wait(10)
    released = jobs[14]  # in the second call
    began = time.monotonic()
    ledger.settle([released], timeout_s=5)
    waited = time.monotonic() - began
    ledger.forget([released])  # the writer released it
    sqs.let_go.set()
    beat.join(10)
    assert waited < 1.0, f"the release waited {waited:.1f} s for another message's call"
    assert sqs.extended[0] == [f"h{i}" for i in range(10)]
    assert sqs.extended[1] == [f"h{i}" for i in range(10, 14)]  # not h14


class Recorded:
    """The queue seam: every ChangeMessageVisibilityBatch's (handle, timeout) pairs in the order
    they arrive, each call first running `during` (the test's hook)."""

    def __init__(self, during: Any = None) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.during = during
        self._lock = threading.Lock()

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        with self._lock:
            self.calls.append(list(changes))
        if self.during is not None:
            self.during(len(self.calls))
        return BatchOutcome(succeeded=list(range(len(changes))))


def held(ledger: Ledger, count: int, visibility_s: Any = 60) -> list[Any]:
    return [
        job
        for i in range(count)
        for job in ledger.admit(
            [ReceivedMessage("q", f"m{i}", f"h{i}", "{}", 1, None)],
            reserved=0,
            visibility_s=visibility_s(i) if callable(visibility_s) else visibility_s,
        )
    ]


def test_a_round_extends_the_nearest_deadlines_first() -> None:
    """With more due than one call carries, the first call must take the messages closest to
    becoming visible, not the first received: on a slow endpoint the last calls of a round come
    too late, and those must be the ones with time to spare."""
    clock = Clock()
    ledger = Ledger(clock)
    held(ledger, 25, visibility_s=lambda i: 60 - i)  # the later received expire sooner
    clock.now = 45.0  # every one has under half its timeout left
    sqs = Recorded()
    beater = Heartbeater(sqs, ledger, StatsObserver(), visibility_s=60, enabled=True,
                         clock=clock, calls_in_flight=1)
    assert beater.beat() == 25
    assert [h for h, _ in sqs.calls[0]] == [f"h{i}" for i in range(24, 14, -1)]
    assert [h for h, _ in sqs.calls[2]] == [f"h{i}" for i in range(4, -1, -1)]


def test_a_round_has_several_calls_on_the_wire_at_once() -> None:
    """Serial calls of 10 at a 50 ms round trip extend under 200 messages a second: a worker
    holding 10,000 lost them to other replicas while it held them (bench/heartbeat_capacity.py).
    Three calls here meet at a barrier that only calls in flight together can pass."""
    clock = Clock()
    ledger = Ledger(clock)
    held(ledger, 30)
    clock.now = 40.0
    barrier = threading.Barrier(3, timeout=10)
    sqs = Recorded(during=lambda _: barrier.wait())
    stats = StatsObserver()
    beater = Heartbeater(sqs, ledger, stats, visibility_s=60, enabled=True, clock=clock)
    assert beater.beat() == 30
    assert (stats.heartbeats, stats.heartbeat_failures) == (30, 0)
    assert not any(job.extending for job in ledger.unstarted())


def test_a_call_that_waited_its_turn_is_planned_from_when_it_goes_out() -> None:
    """A round planned every timeout at its start: a call that went out 20 s later asked for a
    hold past SQS's 12 h cap (refused, so the message was not extended at all), and its
    deadline was booked 20 s early."""
    from worker.heartbeat import HOLD_CAP_MARGIN_S
    from worker.sqs_limits import MAX_HOLD_S

    clock = Clock()
    ledger = Ledger(clock)
    jobs = held(ledger, 15)
    limit = MAX_HOLD_S - HOLD_CAP_MARGIN_S
    clock.now = limit - 50.0  # 50 s left of the 12 h: each extension is capped at 50 s

    def slow_first_call(call: int) -> None:
        if call == 1:
            clock.now += 20.0  # the first call takes 20 s

    sqs = Recorded(during=slow_first_call)
    beater = Heartbeater(sqs, ledger, StatsObserver(), visibility_s=60, enabled=True,
                         clock=clock, calls_in_flight=1)
    assert beater.beat() == 15
    assert {t for _, t in sqs.calls[0]} == {50}
    assert {t for _, t in sqs.calls[1]} == {30}  # 30 s from when it went out: the cap, not past
    assert {job.visible_at for job in jobs[10:]} == {limit}


def test_a_failure_for_a_message_deleted_meanwhile_is_not_a_heartbeat_failure() -> None:
    """The writer deleted a message while its extension was on the wire; SQS refused the stale
    receipt handle. Nothing can become visible: counting it (and logging that messages may
    reach other replicas) made the failure counter, which operators alert on, drift."""
    clock = Clock()
    ledger = Ledger(clock)
    jobs = held(ledger, 2)
    clock.now = 40.0

    class DeletedMeanwhile:
        def change_visibility_batch(
            self, queue_url: str, changes: Sequence[tuple[str, int]]
        ) -> BatchOutcome:
            ledger.forget([jobs[0]])  # the writer's delete landed first
            invalid = "ReceiptHandleIsInvalid: The input receipt handle is invalid."
            return BatchOutcome(failed={0: invalid, 1: invalid})

    stats = StatsObserver()
    beater = Heartbeater(DeletedMeanwhile(), ledger, stats, visibility_s=60, enabled=True,
                         clock=clock)
    assert beater.beat() == 0
    assert (stats.heartbeats, stats.heartbeat_failures) == (0, 1)  # only the one still held
