"""The circuit breaker: a device that keeps failing stops the worker taking work, instead of
turning it into a DLQ pump (split, release, receive again, dead-letter, at receive speed)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
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
    wait_for,
)

from worker.metrics import Metrics
from worker.pipeline import Worker
from worker.pipeline.breaker import CircuitBreaker
from worker.seams import Encoded, ModelFailure, ReceivedMessage
from worker.sqs import SqsAdapter


def test_breaker_counts_only_batches_that_failed_for_the_devices_sake() -> None:
    breaker = CircuitBreaker(3)
    assert not breaker.record(succeeded=0, not_the_requests_fault=True)
    assert not breaker.record(succeeded=0, not_the_requests_fault=False)  # a poison request
    assert not breaker.record(succeeded=0, not_the_requests_fault=True)
    assert breaker.consecutive == 2 and not breaker.tripped
    assert not breaker.record(succeeded=5, not_the_requests_fault=False)  # a success resets
    assert breaker.consecutive == 0
    trips = [breaker.record(succeeded=0, not_the_requests_fault=True) for _ in range(5)]
    assert trips == [False, False, True, False, False]  # trips once
    assert breaker.tripped
    off = CircuitBreaker(0)
    assert not any(off.record(succeeded=0, not_the_requests_fault=True) for _ in range(10))


def receive_all(client: Any, queue_url: str, n: int, timeout: float = 30) -> int:
    """What another replica could receive (and hold) from the queue now, until it has n."""
    seen: set[str] = set()

    def more() -> bool:
        response = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
        )
        seen.update(m["MessageId"] for m in response.get("Messages", []))
        return len(seen) >= n

    wait_for(more, timeout, f"{n} messages to be received")
    return len(seen)


class BrokenDevice(FakeRunner):
    """After a sticky CUDA error: every forward raises, and so does the probe."""

    def __init__(self) -> None:
        super().__init__()
        self.forwards = 0
        self.lock = threading.Lock()

    def run(self, prepared: list[Encoded]) -> list[Any]:
        with self.lock:
            self.forwards += 1
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class DeviceErrors(FakeRunner):
    """A runner that classifies the failure itself (worker.model reports DeviceError)."""

    def run(self, prepared: list[Encoded]) -> list[Any]:
        self.batches.append(len(prepared))
        return [ModelFailure("DeviceError", "CUDA error: device-side assert")] * len(prepared)

    def probe(self) -> bool:
        return False


class PoisonOnly(FakeRunner):
    """One request breaks the forward, the device is fine: the probe says so."""

    probes = 0

    def probe(self) -> bool:
        self.probes += 1
        return True


def test_a_broken_device_trips_the_breaker_and_the_messages_go_back_not_to_the_dlq(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, max_receive_count=3, visibility_s=30)
    n = 60
    send_bodies(sqs_client, queues.input, [request(f"request {i}") for i in range(n)])
    runner = BrokenDevice()
    metrics = Metrics()
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, metrics, max_batch_size=4
    )
    wait_for(lambda: not worker.healthy(), 30, "/healthz to turn red")
    assert not worker.ready()
    assert metrics.circuit_breaker_trips._value.get() == 1
    # everything it held went back at once (visibility 0) for a healthy replica; nothing more
    # was received, nothing dead-lettered
    wait_for(lambda: worker.held == 0, 15, "everything held to be released")
    wait_for(
        lambda: not any(t.is_alive() for t in worker.receivers.threads), 10, "receivers to stop"
    )
    assert runner.forwards == 3  # the threshold, and not one forward more
    assert receive_all(sqs_client, queues.input, n) == n  # a healthy replica gets every one
    assert counts(sqs_client, queues.dlq) == (0, 0)


def test_device_errors_reported_by_the_runner_trip_it_too(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    send_bodies(sqs_client, queues.input, [request(f"r {i}") for i in range(12)])
    worker = start_worker(
        sqs_server.endpoint_url, queues, DeviceErrors(), running_workers, max_batch_size=2
    )
    wait_for(lambda: not worker.healthy(), 30, "/healthz to turn red")
    # A long poll in flight at the trip can still bring back messages just released (held
    # until the last poll ends, then handed back): only then is "held == 0" final.
    wait_for(
        lambda: not any(t.is_alive() for t in worker.receivers.threads), 30, "receivers to stop"
    )
    wait_for(lambda: worker.held == 0, 15, "everything held to be released")
    assert receive_all(sqs_client, queues.input, 12) == 12
    assert counts(sqs_client, queues.dlq) == (0, 0)


def test_poison_requests_alone_in_their_batches_do_not_trip_it(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client, max_receive_count=1)
    send_bodies(sqs_client, queues.input, [request(f"POISON {i}") for i in range(5)])
    runner = PoisonOnly()
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, max_batch_size=1
    )
    wait_for(lambda: counts(sqs_client, queues.dlq)[0] == 5, 40, "the poison in the DLQ")
    assert worker.healthy() and runner.probes >= 3
    send_bodies(sqs_client, queues.input, [request("fine", id="fine")])
    results = ResultReader(sqs_client, queues.results).wait_for(1, timeout=30)
    assert [r["id"] for r in results.values()] == ["fine"]




class PollsHeldAfterTheFirst:
    """The real adapter; every receive after the first waits until the test lets one go, as
    long polls in flight when the breaker trips do. Records what each receive brought."""

    def __init__(self, adapter: SqsAdapter) -> None:
        self.adapter = adapter
        self._lock = threading.Lock()
        self._receives = 0
        self.polls_waiting = threading.Semaphore(0)
        self.let_one_go = threading.Semaphore(0)
        self.received: Counter[str] = Counter()
        self.held_polls_brought: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def receive(self, queue_url: str, **options: Any) -> list[ReceivedMessage]:
        with self._lock:
            self._receives += 1
            held = self._receives > 1
        if held:
            self.polls_waiting.release()
            assert self.let_one_go.acquire(timeout=60), "the test never let the poll go"
        messages = self.adapter.receive(queue_url, **options)
        with self._lock:
            self.received.update(m.message_id for m in messages)
            if held:
                self.held_polls_brought.extend(m.message_id for m in messages)
        return messages


class TripsWithPollsInFlight(FakeRunner):
    """Its first batch fails with a DeviceError once both receivers are in a (held) long poll,
    so the breaker (threshold 1) trips with those polls in flight. Records every text encoded."""

    def __init__(self, sqs: PollsHeldAfterTheFirst) -> None:
        super().__init__()
        self.sqs = sqs
        self.encoded: list[str] = []

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        self.encoded.extend(texts)
        return super().encode(texts, parameters)

    def run(self, prepared: list[Encoded]) -> list[Any]:
        for _ in range(2):
            assert self.sqs.polls_waiting.acquire(timeout=30), "a receiver never polled again"
        return [ModelFailure("DeviceError", "CUDA error: device-side assert")] * len(prepared)

    def probe(self) -> bool:
        return False


def test_what_the_last_polls_bring_after_a_trip_is_held_until_they_end_then_handed_back(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """Handed on, a message a last poll brought back would be released at once, for the
    worker's other poll still in flight to take again: each costing a receive count, the DLQ
    after maxReceiveCount (3 here) for a device fault. Held until every poll has ended, it pays
    at most one receive, as in the drain."""
    queues = make_queues(sqs_client, max_receive_count=3)
    send_bodies(sqs_client, queues.input, [request(f"r {i}") for i in range(12)])
    sqs = PollsHeldAfterTheFirst(
        SqsAdapter.from_environment(endpoint_url=sqs_server.endpoint_url, region_name=REGION)
    )
    runner = TripsWithPollsInFlight(sqs)
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, sqs=sqs,
        max_batch_size=2, circuit_breaker_batches=1, buffer_max=100,
    )
    wait_for(lambda: not worker.healthy(), 30, "the breaker to trip")
    sqs.let_one_go.release()  # one last poll returns, with messages the trip just released
    wait_for(
        lambda: sum(t.is_alive() for t in worker.receivers.threads) == 1, 30, "its receiver to end"
    )
    sqs.let_one_go.release()  # then the other
    wait_for(lambda: not any(t.is_alive() for t in worker.receivers.threads), 30, "receivers")
    wait_for(lambda: worker.held == 0, 15, "everything held to be handed back")
    again = [m for m in sqs.held_polls_brought if sqs.received[m] == 2]
    assert again, "no last poll brought back a message the trip had released: nothing tested"
    # what they brought never went on to the model's pipeline (each text encoded once, from its
    # first receive), and no message was received by this worker more than twice
    assert max(Counter(runner.encoded).values()) == 1
    assert max(sqs.received.values()) == 2
    assert receive_all(sqs_client, queues.input, 12) == 12  # a healthy replica gets every one
    assert counts(sqs_client, queues.dlq) == (0, 0)


class BreakingSession:
    """A decode session that breaks itself on every join (not a request's failure: the session
    handles those), as a bug or a corrupted session state would."""

    def __init__(self, runner: BreaksEverySession) -> None:
        self.runner = runner
        self.tags: list[Any] = []

    @property
    def active(self) -> int:
        return len(self.tags)

    @property
    def rows(self) -> int:
        return len(self.tags)

    def add(self, prepared: Any, tags: list[Any]) -> list[tuple[Any, Any]]:
        self.tags += tags
        with self.runner.lock:
            self.runner.breaks += 1
        raise RuntimeError("session state corrupted")

    def step(self) -> list[tuple[Any, Any]]:
        raise AssertionError("a session that broke was stepped")

    def abandon(self) -> list[Any]:
        tags, self.tags = self.tags, []
        return tags


class BreaksEverySession(FakeRunner):
    """Continuous batching whose session breaks on every join, while the device probe passes."""

    def __init__(self) -> None:
        super().__init__()
        self.breaks = 0
        self.lock = threading.Lock()

    def open_session(self) -> BreakingSession:
        return BreakingSession(self)

    def probe(self) -> bool:
        return True


def test_a_decode_session_that_keeps_breaking_trips_it_like_a_run_that_raises(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """A static `run` that raises is counted (the runner failed, not a request); a session call
    that raised was counted only if the device probe failed too: with the probe passing, every
    request went round to the DLQ at receive speed, /healthz green. Now it trips at 3 like the
    static path, and the requests go back for a healthy replica."""
    queues = make_queues(sqs_client, max_receive_count=3, visibility_s=30)
    n = 40
    send_bodies(sqs_client, queues.input, [request(f"request {i}") for i in range(n)])
    runner = BreaksEverySession()
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, max_batch_size=4
    )
    wait_for(lambda: not worker.healthy(), 30, "/healthz to turn red")
    wait_for(
        lambda: not any(t.is_alive() for t in worker.receivers.threads), 30, "receivers to stop"
    )
    wait_for(lambda: worker.held == 0, 15, "everything held to be released")
    assert runner.breaks == 3
    assert counts(sqs_client, queues.dlq) == (0, 0)
