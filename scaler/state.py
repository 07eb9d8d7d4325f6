"""The policy's memory as a Deployment annotation, so the Lambda itself stays stateless.

A malformed or foreign annotation is never trusted: `decode` returns a fresh state and a problem
string naming what was wrong; the runner reports it and writes a fresh state back.
"""

from __future__ import annotations

import json
import math
from typing import Any

from scaler.policy import State

ANNOTATION = "gpuqueue.dev/scaler-state"
VERSION = 1
MAX_RECOMMENDATIONS = 64


class StateError(ValueError):
    pass


def encode(state: State) -> str:
    body: dict[str, Any] = {
        "v": VERSION,
        "recs": [[round(t, 3), n] for t, n in state.recommendations[-MAX_RECOMMENDATIONS:]],
        "last_active": state.last_active,
        "drain_rate": state.drain_rate,
        "arrival_rate": state.arrival_rate,
        "prev": None
        if state.prev_time is None
        else [state.prev_time, state.prev_backlog, state.prev_visible, state.prev_ready],
        "last_scale_up": state.last_scale_up,
        "ready_since": state.ready_since,
        "peaks": [[round(t, 3), n] for t, n in state.peaks[-MAX_RECOMMENDATIONS:]],
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _num(value: Any, what: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateError(f"{what} must be a finite number, got {value!r}")
    if value < 0:
        raise StateError(f"{what} must be >= 0, got {value!r}")
    return float(value)


def _int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def parse(text: str) -> State:
    """Strict parse; raises StateError saying what is wrong."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(body, dict):
        raise StateError("not a JSON object")
    if body.get("v") != VERSION:
        raise StateError(f"unknown version {body.get('v')!r} (expected {VERSION})")
    recs_raw = body.get("recs", [])
    if not isinstance(recs_raw, list):
        raise StateError("recs must be a list")
    recs: list[tuple[float, int]] = []
    for item in recs_raw:
        if not (isinstance(item, list) and len(item) == 2):
            raise StateError(f"recs entry {item!r} is not [time, replicas]")
        t = _num(item[0], "recs time", allow_none=False)
        n = _int(item[1], "recs replicas")
        assert t is not None and n is not None
        recs.append((t, n))
    prev = body.get("prev")
    prev_time = prev_backlog = prev_visible = prev_ready = None
    if prev is not None:
        if not (isinstance(prev, list) and len(prev) == 4):
            raise StateError("prev must be [time, backlog, visible, ready]")
        prev_time = _num(prev[0], "prev time", allow_none=False)
        prev_backlog = _int(prev[1], "prev backlog")
        prev_visible = _int(prev[2], "prev visible")
        prev_ready = _int(prev[3], "prev ready")
    peaks_raw = body.get("peaks", [])
    if not isinstance(peaks_raw, list):
        raise StateError("peaks must be a list")
    peaks: list[tuple[float, int]] = []
    for item in peaks_raw:
        if not (isinstance(item, list) and len(item) == 2):
            raise StateError(f"peaks entry {item!r} is not [time, replicas]")
        pt = _num(item[0], "peaks time", allow_none=False)
        pn = _int(item[1], "peaks replicas")
        assert pt is not None and pn is not None
        peaks.append((pt, pn))
    return State(
        recommendations=tuple(recs),
        last_active=_num(body.get("last_active"), "last_active"),
        drain_rate=_num(body.get("drain_rate"), "drain_rate"),
        arrival_rate=_num(body.get("arrival_rate"), "arrival_rate"),
        prev_time=prev_time,
        prev_backlog=prev_backlog,
        prev_visible=prev_visible,
        prev_ready=prev_ready,
        last_scale_up=_num(body.get("last_scale_up"), "last_scale_up"),
        ready_since=_num(body.get("ready_since"), "ready_since"),
        peaks=tuple(peaks),
    )


def decode(text: str | None, now: float) -> tuple[State, str | None]:
    """(state, problem). No annotation → fresh state, no problem. Malformed → fresh state + problem.

    A state from the future (clock skew, hand edits) is as untrustworthy as a malformed one.
    """
    if text is None or text == "":
        return State(), None
    try:
        state = parse(text)
    except StateError as exc:
        return State(), f"annotation {ANNOTATION} is malformed ({exc}); state reset"
    times = [t for t, _ in (*state.recommendations, *state.peaks)]
    times += [
        t
        for t in (state.prev_time, state.last_active, state.last_scale_up, state.ready_since)
        if t is not None
    ]
    if any(t > now + 300 for t in times):
        return State(), f"annotation {ANNOTATION} holds times in the future; state reset"
    return state, None
