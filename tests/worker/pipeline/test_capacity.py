"""The capacity estimator: the buffer bound (pure), and the estimator's samples under
concurrent use (the model thread and the writers record while receivers ask)."""

from __future__ import annotations

import threading

from worker.pipeline.capacity import CapacityEstimator, buffer_bound


def test_buffer_bound() -> None:
    # configured wins
    assert (
        buffer_bound(
            configured=7,
            throughput_msgs_s=1e6,
            visibility_timeout_s=60,
            max_batch_size=32,
            receivers=4,
        )
        == 7
    )
    # no measurement yet: the floor (two batches + one receive per receiver)
    assert (
        buffer_bound(
            configured=0,
            throughput_msgs_s=None,
            visibility_timeout_s=60,
            max_batch_size=32,
            receivers=4,
        )
        == 104
    )
    # measured: what can be processed in half a visibility timeout
    assert (
        buffer_bound(
            configured=0,
            throughput_msgs_s=100.0,
            completion_msgs_s=1e6,  # results leave as fast as the model makes them
            visibility_timeout_s=60,
            max_batch_size=32,
            receivers=4,
        )
        == 3000
    )
    # a slow model never drops below the floor; a fast one is capped
    assert (
        buffer_bound(
            configured=0,
            throughput_msgs_s=0.5,
            completion_msgs_s=1e6,
            visibility_timeout_s=60,
            max_batch_size=32,
            receivers=4,
        )
        == 104
    )
    assert (
        buffer_bound(
            configured=0,
            throughput_msgs_s=1e6,
            completion_msgs_s=1e6,
            visibility_timeout_s=60,
            max_batch_size=32,
            receivers=4,
            ceiling=5000,
        )
        == 5000
    )


def test_buffer_bound_follows_the_slower_of_model_and_completions() -> None:
    """When messages leave the worker slower than the model runs (SQS slow or failing), the bound
    is what actually leaves in half a visibility timeout, so held messages do not outlive it."""
    common = {"configured": 0, "visibility_timeout_s": 10, "max_batch_size": 32, "receivers": 4}
    slow_writes = buffer_bound(throughput_msgs_s=400.0, completion_msgs_s=60.0, **common)
    fast_writes = buffer_bound(throughput_msgs_s=400.0, completion_msgs_s=900.0, **common)
    assert slow_writes == 300  # 60 msgs/s x 5 s
    assert fast_writes == 2000  # completions never raise it above the model's rate: 400 x 5 s
    # nothing has left yet: the floor, whatever the model's rate (a fast model's 10,000 filled
    # up before the first departure when the writes were the bottleneck)
    assert buffer_bound(throughput_msgs_s=400.0, **common) == 104
    # no model figure yet: the completion rate alone
    assert buffer_bound(throughput_msgs_s=None, completion_msgs_s=60.0, **common) == 300
    # never below the floor
    assert buffer_bound(throughput_msgs_s=400.0, completion_msgs_s=1.0, **common) == 104


def test_bound_is_safe_to_ask_while_samples_are_recorded() -> None:
    """Receivers ask for the bound while the model thread and the writers record samples. The
    old Worker.buffer_limit summed the model thread's deque while it was appended to: "deque
    mutated during iteration" killed a receiver thread, and the worker exited."""
    capacity = CapacityEstimator(
        configured=0, visibility_timeout_s=60, max_batch_size=32, receivers=4
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def record() -> None:
        while not stop.is_set():
            capacity.record_batch(32, 0.01)
            capacity.record_departures([(0.5, 20)] * 10)

    def ask() -> None:
        try:
            for _ in range(20_000):
                assert capacity.bound() >= 2 * 32 + 10 * 4
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=record) for _ in range(2)]
    askers = [threading.Thread(target=ask) for _ in range(2)]
    for thread in writers + askers:
        thread.start()
    for thread in askers:
        thread.join(120)
    stop.set()
    for thread in writers:
        thread.join(10)
    assert errors == []


def test_bound_follows_the_recorded_throughput_and_departures() -> None:
    capacity = CapacityEstimator(
        configured=0, visibility_timeout_s=60, max_batch_size=8, receivers=1
    )
    assert capacity.bound() == 2 * 8 + 10  # nothing learned: the floor
    capacity.record_batch(100, 1.0)  # 100 msgs/s of model
    assert capacity.bound() == 2 * 8 + 10  # nothing has left yet: still the floor
    capacity.record_departures([(1.0, 100)] * 5)  # each found 100 held, left after 1 s
    assert capacity.bound() == 1000  # the model's 100/s: 10 s of work (half the 20 s horizon)
    capacity.record_departures([(10.0, 50)] * 300)  # found 50 held, left after 10 s: 5/s
    assert capacity.bound() == 50


def test_the_completion_rate_does_not_grow_with_what_was_just_received() -> None:
    """Little's law with the count held *now*: a receive that had just raised it was divided by
    times held measured before it, so the estimated rate rose with what the bound let in (a fast
    model, 4 writers at 0.25 s a call: 80 msgs/s left, 9,451 estimated, 4,960 held against a
    10 s bound of 800). Each departure's own sample (what it found held, how long it stayed)
    keeps the estimate at what leaves, however much arrived since."""
    capacity = CapacityEstimator(
        configured=0, visibility_timeout_s=60, max_batch_size=32, receivers=4
    )
    capacity.record_batch(32, 0.001)  # the model: 32,000 msgs/s
    # 80 msgs/s leave: a message that found h held left h / 80 s later
    capacity.record_departures([(h / 80, h) for h in range(100, 200)])
    assert abs(capacity.completion_rate() - 80.0) < 1e-6  # type: ignore[operator]
    assert capacity.bound() == 800  # 10 s of 80 msgs/s, whatever is held now


def test_a_batch_is_expected_to_take_the_lower_of_its_two_estimates() -> None:
    capacity = CapacityEstimator(
        configured=0, visibility_timeout_s=60, max_batch_size=32, receivers=1
    )
    assert capacity.expected_seconds(32, 3200) is None  # nothing timed yet
    capacity.record_batch(32, 0.2, work=3200)  # 32 messages, 3200 padded tokens, 0.2 s
    capacity.record_batch(32, 0.2, work=3200)
    assert capacity.expected_seconds(32, 3200) == 0.2
    assert capacity.expected_seconds(32, 1600) == 0.1  # half the tokens: half the time
    assert capacity.expected_seconds(8, 3200) == 0.05  # a quarter of the messages
    plain = CapacityEstimator(configured=0, visibility_timeout_s=60, max_batch_size=32, receivers=1)
    plain.record_batch(10, 0.1)  # a runner that reports no work: its messages are the work
    assert plain.expected_seconds(5, 5) == 0.05
