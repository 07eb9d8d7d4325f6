"""Heartbeat scheduling (extend past half the timeout, capped below 12 h from receive) and the
back-pressure bound."""

from __future__ import annotations

from worker.heartbeat import (
    HOLD_CAP_MARGIN_S,
    SQS_MAX_HOLD_S,
    Held,
    buffer_bound,
    next_heartbeat_check,
    plan_heartbeats,
)


def test_fresh_message_gets_no_heartbeat() -> None:
    held = [Held("a", received_at=0.0, visible_at=60.0)]
    assert plan_heartbeats(held, now=10.0, visibility_timeout_s=60) == []


def test_message_past_half_its_timeout_is_extended_by_a_full_timeout() -> None:
    held = [
        Held("a", received_at=0.0, visible_at=60.0),
        Held("b", received_at=25.0, visible_at=85.0),
    ]
    plan = plan_heartbeats(held, now=31.0, visibility_timeout_s=60)
    assert [(e.key, e.timeout_s, e.visible_at) for e in plan] == [("a", 60, 91.0)]


def test_extension_capped_below_twelve_hours_from_receive() -> None:
    timeout = 3600
    limit = SQS_MAX_HOLD_S - HOLD_CAP_MARGIN_S
    near_end = limit - 1000.0  # 1000 s of allowed hold left, timeout would ask for 3600
    held = [Held("a", received_at=0.0, visible_at=near_end + 100.0)]
    plan = plan_heartbeats(held, now=near_end, visibility_timeout_s=timeout)
    assert len(plan) == 1
    assert plan[0].timeout_s == 1000
    assert plan[0].visible_at <= limit


def test_no_extension_once_the_cap_is_reached() -> None:
    limit = SQS_MAX_HOLD_S - HOLD_CAP_MARGIN_S
    held = [Held("a", received_at=0.0, visible_at=limit + 5.0)]
    assert plan_heartbeats(held, now=limit - 1.0, visibility_timeout_s=60) == []


def test_check_interval_sees_each_message_twice_between_half_and_expiry() -> None:
    for timeout in (1, 2, 10, 60, 600, 43_200):
        interval = next_heartbeat_check(timeout)
        assert 0.25 <= interval <= 30.0
        assert interval <= timeout / 4 or interval == 0.25


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
    model_only = buffer_bound(throughput_msgs_s=400.0, **common)
    slow_writes = buffer_bound(throughput_msgs_s=400.0, completion_msgs_s=60.0, **common)
    fast_writes = buffer_bound(throughput_msgs_s=400.0, completion_msgs_s=900.0, **common)
    assert model_only == 2000
    assert slow_writes == 300  # 60 msgs/s x 5 s
    assert fast_writes == model_only  # completions never raise it above the model's rate
    # no model figure yet: the completion rate alone
    assert buffer_bound(throughput_msgs_s=None, completion_msgs_s=60.0, **common) == 300
    # never below the floor
    assert buffer_bound(throughput_msgs_s=400.0, completion_msgs_s=1.0, **common) == 104
