"""The state annotation: round trip, and every malformed form reported and reset."""

from __future__ import annotations

import json

import pytest

from scaler.policy import Observation, PolicyConfig, State, decide
from scaler.state import ANNOTATION, decode, encode, staircase

FULL = State(
    recommendations=((100.0, 5), (160.0, 3)),  # a staircase: what encode keeps (see staircase)
    last_active=150.0,
    drain_rate=2.5,
    arrival_rate=7.0,
    prev_time=160.0,
    prev_backlog=40,
    prev_visible=30,
    prev_ready=4,
    last_scale_up=100.0,
    peaks=((0.0, 8), (120.0, 5)),
    ready_since=40.0,
    history_since=10.0,
    idle_since=None,
    gaps=(600.0, 1200.5),
)


def test_round_trip() -> None:
    state, problem = decode(encode(FULL), now=200.0)
    assert problem is None
    assert state == FULL


def test_missing_annotation_is_a_fresh_state_without_problem() -> None:
    assert decode(None, 0.0) == (State(), None)
    assert decode("", 0.0) == (State(), None)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 99}', "unknown version"),
        ('{"v": 1, "recs": "x"}', "recs"),
        ('{"v": 1, "recs": [[1, -2]]}', "recs.0.1"),
        ('{"v": 1, "recs": [[1, 2.5]]}', "recs.0.1"),
        ('{"v": 1, "drain_rate": "fast"}', "drain_rate"),
        ('{"v": 1, "drain_rate": -1}', "drain_rate"),
        ('{"v": 1, "drain_rate": 1e400}', "drain_rate"),
        ('{"v": 1, "prev": [1, 2]}', "prev"),
        ('{"v": 1, "last_active": true}', "last_active"),
        ('{"v": 1, "last_active": 1' + "0" * 400 + "}", "last_active"),
        ('{"v": 1, "peaks": 3}', "peaks"),
        ('{"v": 1, "peaks": [[5.0, -1]]}', "peaks.0.1"),
        ('{"v": 1, "gaps": [-5]}', "gaps.0"),
        ('{"v": 1, "since": 1e12}', "since"),
    ],
)
def test_malformed_is_reported_and_reset(text: str, needle: str) -> None:
    state, problem = decode(text, now=1000.0)
    assert state == State()
    assert problem is not None and needle in problem and ANNOTATION in problem


def test_times_from_the_future_are_not_trusted() -> None:
    text = json.dumps({"v": 1, "recs": [[10_000.0, 9]]})
    state, problem = decode(text, now=1000.0)
    assert state == State() and problem is not None and "future" in problem


def test_an_annotation_written_before_the_new_keys_still_loads() -> None:
    old = '{"v":1,"recs":[[100.0,3]],"last_active":150.0,"drain_rate":2.5,"arrival_rate":7.0,' \
        '"prev":[160.0,40,30,4],"last_scale_up":100.0,"ready_since":40.0,"peaks":[]}'
    state, problem = decode(old, now=200.0)
    assert problem is None and state.recommendations == ((100.0, 3),)
    assert state.history_since == 160.0  # the history began no later than the last run


def test_a_long_scale_down_window_survives_the_annotation() -> None:
    """A 30-minute window, a decision every 20 s: the last 64 recommendations kept (21 min) let
    the peak fall out of the annotation, and the Deployment scaled down 500 s early."""
    t0 = 1_800_000_000.0
    cfg = PolicyConfig(max_replicas=20, scale_down_stabilization_s=1800.0,
                       cooldown_to_zero_s=7200.0, release_after_s=7200.0, keep_warm_fraction=0.0)
    state = State(history_since=t0 - 10_000, recommendations=((t0, 10),), last_active=t0,
                  prev_time=t0, prev_backlog=0, prev_visible=0, prev_ready=10,
                  ready_since=t0 - 10_000)
    current, now = 10, t0
    while now < t0 + 1780:  # inside the window: 10 holds
        now += 20
        decision = decide(Observation(now=now, visible=0, in_flight=0, delayed=0,
                                      current=current, ready=current, drained_per_s=1.0),
                          state, cfg)
        state, problem = decode(encode(decision.state), now)  # what the runner does
        assert problem is None
        current = decision.desired
        assert current == 10, f"scaled down to {current} at +{now - t0:.0f} s of an 1800 s window"
    assert len(state.recommendations) <= 3


def test_the_staircase_keeps_what_the_windows_max_can_use() -> None:
    recs = ((1.0, 5), (2.0, 9), (3.0, 4), (4.0, 6), (5.0, 2), (6.0, 2))
    # (1, 5) is outlasted by (2, 9); (3, 4) by (4, 6); (5, 2) by (6, 2)
    assert staircase(recs) == [(2.0, 9), (4.0, 6), (6.0, 2)]
    # every window's max is the same from either list
    for start in (0.5, 1.5, 2.5, 3.5, 4.5, 5.5):
        assert max(n for t, n in recs if t >= start) == max(
            n for t, n in staircase(recs) if t >= start
        )
    # past the limit, the oldest merge into the larger count at the later time (never shorter)
    falling = tuple((float(t), 100 - t) for t in range(10))
    assert staircase(falling, limit=4) == [(6.0, 100), (7.0, 93), (8.0, 92), (9.0, 91)]


def test_a_last_active_a_little_ahead_does_not_keep_an_idle_queue_warm() -> None:
    """A last_active stamped ahead (trusted: within FUTURE_SLACK_S) made the idle time negative,
    which held an idle queue warm for that lead past cooldown + stabilization."""
    now = 10_000.0
    cfg = PolicyConfig(max_replicas=1, scale_down_stabilization_s=0.0, cooldown_to_zero_s=0.0,
                       release_after_s=0.0, startup_delay_s=0.0, target_wait_s=10.0,
                       headroom=0.0, keep_warm_fraction=0.0, keep_warm_s=0.0)
    state, problem = decode(encode(State(last_active=now + 290.0, history_since=now - 1000.0)), now)
    assert problem is None
    decision = decide(Observation(now=now + 20, visible=0, in_flight=0, delayed=0, current=1,
                                  ready=1), state, cfg)
    assert decision.desired == 0, decision.reason
