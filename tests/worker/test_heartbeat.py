"""Heartbeat scheduling: extend past half the timeout, capped below 12 h from receive."""

from __future__ import annotations

from worker.heartbeat import HOLD_CAP_MARGIN_S, Held, next_heartbeat_check, plan_heartbeats
from worker.sqs_limits import MAX_HOLD_S as SQS_MAX_HOLD_S


def test_fresh_message_gets_no_heartbeat() -> None:
    held = [Held(1, received_at=0.0, visible_at=60.0)]
    assert plan_heartbeats(held, now=10.0, visibility_timeout_s=60) == []


def test_message_past_half_its_timeout_is_extended_by_a_full_timeout() -> None:
    held = [
        Held(1, received_at=0.0, visible_at=60.0),
        Held(2, received_at=25.0, visible_at=85.0),
    ]
    plan = plan_heartbeats(held, now=31.0, visibility_timeout_s=60)
    assert [(e.key, e.timeout_s, e.visible_at) for e in plan] == [(1, 60, 91.0)]


def test_extension_capped_below_twelve_hours_from_receive() -> None:
    timeout = 3600
    limit = SQS_MAX_HOLD_S - HOLD_CAP_MARGIN_S
    near_end = limit - 1000.0  # 1000 s of allowed hold left, timeout would ask for 3600
    held = [Held(1, received_at=0.0, visible_at=near_end + 100.0)]
    plan = plan_heartbeats(held, now=near_end, visibility_timeout_s=timeout)
    assert len(plan) == 1
    assert plan[0].timeout_s == 1000
    assert plan[0].visible_at <= limit


def test_no_extension_once_the_cap_is_reached() -> None:
    limit = SQS_MAX_HOLD_S - HOLD_CAP_MARGIN_S
    held = [Held(1, received_at=0.0, visible_at=limit + 5.0)]
    assert plan_heartbeats(held, now=limit - 1.0, visibility_timeout_s=60) == []


def test_check_interval_sees_each_message_twice_between_half_and_expiry() -> None:
    for timeout in (1, 2, 10, 60, 600, 43_200):
        interval = next_heartbeat_check(timeout)
        assert 0.25 <= interval <= 30.0
        assert interval <= timeout / 4 or interval == 0.25
