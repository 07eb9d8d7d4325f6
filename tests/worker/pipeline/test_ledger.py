"""The ledger's compare-and-set transitions and its heartbeat bookkeeping (pure unit tests: the
ledger does no I/O)."""

from __future__ import annotations

import threading

from worker_test_helpers import Clock

from worker.pipeline.ledger import JobState, Ledger
from worker.seams import ReceivedMessage


def messages(n: int) -> list[ReceivedMessage]:
    return [ReceivedMessage("q", f"m{i}", f"r{i}", "{}", 1, None) for i in range(n)]


def test_each_job_is_acted_on_by_exactly_one_stage() -> None:
    ledger = Ledger()
    assert ledger.reserve(lambda: 10, most=10) == 10
    jobs = ledger.admit(messages(4), reserved=10, visibility_s=60)
    assert ledger.held == 4
    running = ledger.start(jobs[:2])
    assert running == jobs[:2]
    # the drain takes what is not on the device; the executor's own jobs are not offered
    unstarted = ledger.unstarted()
    assert unstarted == jobs[2:]
    assert ledger.finish(unstarted, JobState.RECEIVED) == jobs[2:]
    # a stage that finishes late loses: the drain already took them
    assert ledger.finish(jobs[2:], JobState.RECEIVED) == []
    assert ledger.start(jobs[2:]) == []
    # only the executor finishes what it runs, and only once
    assert ledger.finish(jobs[:2], JobState.RECEIVED) == []
    assert ledger.finish(jobs[:2], JobState.RUNNING) == jobs[:2]
    assert ledger.finish(jobs[:2], JobState.RUNNING) == []
    ledger.forget(jobs)
    assert ledger.held == 0


def test_reserve_blocks_at_the_bound_and_ends_when_closed() -> None:
    ledger = Ledger()
    jobs = ledger.admit(messages(5), reserved=0, visibility_s=60)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(ledger.reserve(lambda: 5, most=10)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # full: it waits
    ledger.forget(jobs[:2])
    waiter.join(5)
    assert got == [2]  # room for two
    closer = threading.Thread(target=lambda: got.append(ledger.reserve(lambda: 0, most=10)))
    closer.start()
    ledger.close()
    closer.join(5)
    assert got == [2, 0]


def test_an_extension_in_flight_holds_back_a_release_of_the_same_job() -> None:
    """The heartbeater's call and a release race: without the mark, the extension could land
    after the release and hide a released message for another visibility timeout."""
    clock = Clock()
    ledger = Ledger(clock)
    [job] = ledger.admit(messages(1), reserved=0, visibility_s=10)
    clock.now = 6.0  # past half its timeout
    due = ledger.begin_extensions(ledger.due_extensions(clock.now, 10), clock.now, 10)
    assert [j for j, _ in due] == [job] and job.extending
    assert ledger.due_extensions(clock.now, visibility_s=10) == []  # not twice at once
    settled = threading.Event()

    def release() -> None:
        ledger.settle([job], timeout_s=10)
        settled.set()

    releaser = threading.Thread(target=release)
    releaser.start()
    assert not settled.wait(0.3)  # waits for the extension to return
    ledger.end_extensions(due, succeeded=[0])
    assert settled.wait(5)
    assert job.visible_at == 16.0 and not job.extending

    # and once settled, no extension starts for it while its release is on the wire
    clock.now = 12.0  # past half the extended timeout: it would be due
    assert ledger.due_extensions(clock.now, visibility_s=10) == []


def test_no_extension_starts_between_a_release_and_forgetting_the_job() -> None:
    """settle() waited only for an extension already in flight: a heartbeat tick while the
    release call was on the wire started a new one, which landed after it and hid the released
    message for a whole visibility timeout (a drain's or a back-off's release delayed)."""
    clock = Clock()
    ledger = Ledger(clock)
    released, kept = ledger.admit(messages(2), reserved=0, visibility_s=10)
    clock.now = 6.0
    ledger.settle([released])  # the writer is about to make it visible
    due = ledger.due_extensions(clock.now, visibility_s=10)
    assert [job for job, _ in due] == [kept]
    ledger.forget([released])
    assert ledger.held == 1


def test_wait_for_polls_returns_once_every_reservation_is_admitted_or_cancelled() -> None:
    """How the circuit breaker knows the last long polls have ended: each holds a reservation
    until what it brought is admitted."""
    ledger = Ledger()
    first = ledger.reserve(lambda: 100, most=10)
    second = ledger.reserve(lambda: 100, most=10)
    ledger.close()
    assert ledger.wait_for_polls(timeout_s=0.01) is False  # two polls in flight
    ledger.admit(messages(3), reserved=first, visibility_s=60)
    assert ledger.wait_for_polls(timeout_s=0.01) is False  # one left
    waiter_done = threading.Event()
    waiter = threading.Thread(target=lambda: ledger.wait_for_polls() and waiter_done.set())
    waiter.start()
    ledger.cancel(second)  # the other poll failed
    waiter.join(5)
    assert waiter_done.is_set() and ledger.held == 3
