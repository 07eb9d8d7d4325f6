"""The state annotation: round trip, and every malformed form reported and reset."""

from __future__ import annotations

import json

import pytest

from scaler.policy import State
from scaler.state import ANNOTATION, decode, encode

FULL = State(
    recommendations=((100.0, 3), (160.0, 5)),
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
