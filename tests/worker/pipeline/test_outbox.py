"""The outbox groups outcomes by destination: a full SendMessageBatch goes at once, a partial
one after the linger, and closing drains it."""

from __future__ import annotations

import threading
import time

from worker_test_helpers import wait_for

from worker.pipeline.ledger import Ledger
from worker.pipeline.outbox import Outbox
from worker.pipeline.outcomes import Action, Outcome, release
from worker.seams import ReceivedMessage


def sends(n: int, destination: str) -> list[Outcome]:
    jobs = Ledger().admit(
        [ReceivedMessage("in", f"m{i}", f"r{i}", "{}", 1, None) for i in range(n)], 0, 60
    )
    return [Outcome(j, Action.SEND, "ok", result={}, destination=destination) for j in jobs]


def test_a_full_group_goes_at_once_and_a_partial_one_after_the_linger() -> None:
    outbox = Outbox(linger_s=0.2)
    outbox.put(sends(13, "a"))
    started = time.monotonic()
    first = outbox.take()
    assert first is not None and len(first) == 10
    assert time.monotonic() - started < 0.15  # full: no linger
    rest = outbox.take()
    assert rest is not None and len(rest) == 3
    assert time.monotonic() - started >= 0.19  # partial: waited the linger out


def test_destinations_and_releases_never_share_a_group() -> None:
    outbox = Outbox(linger_s=0.0)
    a, b = sends(2, "a"), sends(2, "b")
    releases = [release(o.job) for o in sends(2, "a")]
    outbox.put(a + b + releases)
    groups = [outbox.take() for _ in range(3)]
    keys = [{(o.action, o.destination) for o in g or []} for g in groups]
    assert sorted(len(k) for k in keys) == [1, 1, 1]
    assert {(Action.RELEASE, None)} in keys


def test_closing_hands_out_what_is_left_at_once_then_none() -> None:
    outbox = Outbox(linger_s=60.0)
    outbox.put(sends(3, "a"))
    got: list[object] = []
    taker = threading.Thread(target=lambda: got.extend([outbox.take(), outbox.take()]))
    taker.start()
    outbox.close()  # no waiting out the 60 s linger
    taker.join(5)
    assert not taker.is_alive()
    assert got[1] is None and len(got[0]) == 3  # type: ignore[arg-type]
    assert outbox.put(sends(1, "a")) is False


def test_one_put_of_several_full_groups_wakes_a_writer_for_each() -> None:
    """put() wakes one waiting writer; the one it woke passes the rest on. Without that, the
    other writers slept through a batch's results and one wrote every group in turn."""
    outbox = Outbox(linger_s=60.0)
    got: list[list[Outcome] | None] = []
    lock = threading.Lock()

    def take_one() -> None:
        group = outbox.take()
        with lock:
            got.append(group)

    takers = [threading.Thread(target=take_one) for _ in range(3)]
    for taker in takers:
        taker.start()
    wait_for_waiting(outbox, 3)  # all three asleep in take()
    outbox.put(sends(30, "a"))
    for taker in takers:
        taker.join(5)
    try:
        assert [len(g or []) for g in got] == [10, 10, 10]
    finally:
        outbox.close()


def wait_for_waiting(outbox: Outbox, n: int) -> None:
    wait_for(lambda: outbox.waiting >= n, 5, f"{n} writers waiting in take()", interval=0.001)
    assert outbox.waiting == n


def test_unserved_counts_full_groups_beyond_the_writers_free_to_take_them() -> None:
    outbox = Outbox(linger_s=60.0)
    outbox.put(sends(9, "a"))
    assert outbox.unserved() == 0  # not a full group yet: the linger will send it
    outbox.put(sends(21, "a"))
    assert outbox.unserved() == 3  # three full groups, and no writer in take()
    for _ in range(3):
        outbox.take()
    taker = threading.Thread(target=outbox.take)
    taker.start()
    wait_for_waiting(outbox, 1)
    outbox.put(sends(20, "b"))
    # two full groups, one writer waiting for one of them (or it has taken it already)
    assert outbox.unserved() == 1
    taker.join(5)
    outbox.close()
    assert outbox.unserved() == 0  # closed: no writer to start
