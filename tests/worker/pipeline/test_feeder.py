"""The batch feeder forms the next batch just in time: while the executor runs a batch it expects
to take a while, the next is formed near its end (and so sorted from what arrived meanwhile), and
at once when the executor says it is free."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from worker_test_helpers import wait_for

from worker.batching import BatchLimits
from worker.pipeline.feeder import BatchFeeder
from worker.pipeline.ledger import Job


class Padding:
    """The runner's prepare: the batch's encoded items, as given."""

    def prepare(self, items: Sequence[tuple[Any, Mapping[str, Any]]]) -> list[Any]:
        return [encoded for encoded, _ in items]


def job(key: int, length: int) -> Job:
    found = Job(key, message=None, received_mono=0.0, received_wall=0.0, visible_at=0.0)  # type: ignore[arg-type]
    found.request = SimpleNamespace(task="embed", parameters={})
    found.encoded = SimpleNamespace(rows=1, length=length)
    return found


def started_feeder(max_batch_size: int = 2) -> BatchFeeder:
    limits = BatchLimits(max_batch_size=max_batch_size, max_wait_s=0.0, max_reorder_s=10.0)
    feeder = BatchFeeder(Padding(), limits, writer=None, answering=None)  # type: ignore[arg-type]

    def spawn(name: str, target: Any) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    feeder.start(spawn)
    return feeder


def test_the_next_batch_is_formed_late_in_the_running_one_from_what_arrived_meanwhile() -> None:
    feeder = started_feeder()
    try:
        took = time.monotonic()
        feeder.taken(0.4)  # the executor took a batch it expects to run 0.4 s
        feeder.add([job(1, 50), job(2, 50)])  # full at once: formed at once, were it not held
        feeder.add([job(3, 5), job(4, 5)])
        wait_for(feeder.handoff.full, 10, "the next batch to be prepared")
        formed_after = time.monotonic() - took
        jobs, prepared = feeder.handoff.get_nowait()
        # formed no earlier than three quarters of the expected 0.4 s, less a lead of ~10 ms
        assert formed_after >= 0.25
        # so the short requests that came after the full batch went first
        assert sorted(j.key for j in jobs) == [3, 4]
        assert [p.length for p in prepared] == [5, 5]
    finally:
        feeder.stop()


def test_the_executor_asking_gets_the_next_batch_at_once() -> None:
    feeder = started_feeder()
    try:
        feeder.taken(60.0)  # expects a long batch ...
        feeder.add([job(1, 10), job(2, 10)])
        feeder.want()  # ... that ended early
        wait_for(feeder.handoff.full, 5, "the next batch, without waiting out the estimate")
        jobs, _ = feeder.handoff.get_nowait()
        assert sorted(j.key for j in jobs) == [1, 2]
    finally:
        feeder.stop()


def test_a_batch_taken_with_no_wait_gets_the_next_formed_at_once() -> None:
    feeder = started_feeder()
    try:
        feeder.taken()  # a decode session: it joins whatever is ready between steps
        feeder.add([job(1, 10), job(2, 10)])
        wait_for(feeder.handoff.full, 5, "the next batch, at once")
    finally:
        feeder.stop()


def test_with_no_estimate_the_next_batch_waits_for_the_executor_to_ask() -> None:
    """The first batch: nothing timed yet. Formed at once, the next batch would be cut from the
    first receives' few messages (here the two long ones); formed when the device is free, it
    takes the shorter ones that arrived while the first batch ran."""
    feeder = started_feeder()
    try:
        feeder.taken(None)
        feeder.add([job(1, 50), job(2, 50)])  # full at once
        feeder.add([job(3, 5), job(4, 5)])
        # the old rule formed it within milliseconds; an observation window, not a hand-off
        with pytest.raises(AssertionError):
            wait_for(feeder.handoff.full, 0.3, "a batch formed before it was asked for")
        feeder.want()
        wait_for(feeder.handoff.full, 5, "the next batch, once asked for")
        jobs, _ = feeder.handoff.get_nowait()
        assert sorted(j.key for j in jobs) == [3, 4]
    finally:
        feeder.stop()
