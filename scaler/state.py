"""The policy's memory as a Deployment annotation, so the Lambda itself stays stateless.

The annotation is parsed into a bounded pydantic model: every time, count and rate has a range,
so a hand edit or a foreign writer (an integer of 400 digits, a negative count, `true` for a
time) cannot reach the policy's arithmetic. What does not fit is never trusted: `decode` returns a
fresh state and a problem naming the field; the runner reports it as a warning and writes a fresh
state back, and the policy, having no history, holds the replicas that run for its stabilization
window (scaler.policy).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scaler.policy import State, trusted

ANNOTATION = "gpuqueue.dev/scaler-state"
VERSION = 1
MAX_RECOMMENDATIONS = 64
#: seconds since the epoch up to the year 5138; replicas and backlogs up to 2**53 (exact as the
#: floats the policy computes with: a backlog over a billion, which SQS allows, once made the
#: scaler refuse its own annotation on every run); larger ones are written as that
MAX_TIME = 1e11
MAX_COUNT = 2**53
MAX_RATE = 1e9

Time = Annotated[float, Field(ge=0, le=MAX_TIME, strict=True)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Rate = Annotated[float, Field(ge=0, le=MAX_RATE, strict=True)]


class StateBody(BaseModel):
    """The annotation's JSON (v1; keys added later are optional, so older annotations load)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    v: Literal[1]
    recs: list[tuple[Time, Count]] = Field(default_factory=list, max_length=4 * MAX_RECOMMENDATIONS)
    last_active: Time | None = None
    drain_rate: Rate | None = None
    arrival_rate: Rate | None = None
    prev: tuple[Time, Count | None, Count | None, Count | None] | None = None
    last_scale_up: Time | None = None
    ready_since: Time | None = None
    peaks: list[tuple[Time, Count]] = Field(
        default_factory=list, max_length=4 * MAX_RECOMMENDATIONS
    )
    since: Time | None = None
    idle_since: Time | None = None
    gaps: list[Time] = Field(default_factory=list, max_length=MAX_RECOMMENDATIONS)
    waiting_since: Time | None = None


class StateError(ValueError):
    pass


def encode(state: State) -> str:
    body: dict[str, Any] = {
        "v": VERSION,
        "recs": [[round(t, 3), n] for t, n in staircase(state.recommendations)],
        "last_active": state.last_active,
        "drain_rate": state.drain_rate,
        "arrival_rate": state.arrival_rate,
        "prev": None
        if state.prev_time is None
        else [state.prev_time, _count(state.prev_backlog), _count(state.prev_visible),
              _count(state.prev_ready)],
        "last_scale_up": state.last_scale_up,
        "ready_since": state.ready_since,
        "peaks": [[round(t, 3), _count(n)] for t, n in state.peaks[-MAX_RECOMMENDATIONS:]],
        "since": state.history_since,
        "idle_since": state.idle_since,
        "gaps": [round(g, 3) for g in state.gaps],
        "waiting_since": state.waiting_since,
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _count(n: int | None) -> int | None:
    return None if n is None else min(n, MAX_COUNT)


def staircase(
    recommendations: tuple[tuple[float, int], ...], limit: int = MAX_RECOMMENDATIONS
) -> list[tuple[float, int]]:
    """The recommendations the policy can still use, at most `limit`. It reads only their max
    over the scale-down window, so one with a later one at least as large never decides
    anything: what is left has counts falling with time, one per count at most. Past `limit`
    (a window over more than `limit` distinct counts), the oldest two merge into the larger
    count at the later time: the window then holds that count a little longer, never shorter.
    (Keeping the last 64 cut a 1800 s window to 21 minutes at a run every 20 s.)"""
    kept: list[tuple[float, int]] = []
    for t, n in reversed(recommendations):
        if not kept or n > kept[-1][1]:
            kept.append((t, n))
    kept.reverse()
    while len(kept) > limit:
        kept[0:2] = [(kept[1][0], kept[0][1])]
    return kept


def _where(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{loc}: {err.get('msg', 'invalid')}"


def parse(text: str) -> State:
    """Strict parse; raises StateError saying what is wrong (and where)."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise StateError(f"not JSON{where}") from None
    if not isinstance(raw, dict):
        raise StateError("not a JSON object")
    if raw.get("v") != VERSION:
        raise StateError(f"unknown version {raw.get('v')!r} (expected {VERSION})")
    try:
        body = StateBody.model_validate_json(text)
    except ValidationError as exc:
        raise StateError(f"out of range or malformed: {_where(exc)}") from None
    prev = body.prev or (None, None, None, None)
    return State(
        recommendations=tuple(body.recs),
        last_active=body.last_active,
        drain_rate=body.drain_rate,
        arrival_rate=body.arrival_rate,
        prev_time=prev[0],
        prev_backlog=prev[1],
        prev_visible=prev[2],
        prev_ready=prev[3],
        last_scale_up=body.last_scale_up,
        ready_since=body.ready_since,
        peaks=tuple(body.peaks),
        # written before `since` existed: the history began at least at the last run
        history_since=body.since if body.since is not None else prev[0],
        idle_since=body.idle_since,
        gaps=tuple(body.gaps),
        waiting_since=body.waiting_since,
    )


def decode(text: str | None, now: float) -> tuple[State, str | None]:
    """(state, problem). No annotation → fresh state, no problem. Malformed or out of range →
    fresh state + problem. A fresh state has no history: the policy holds for a window."""
    if text is None or text == "":
        return State(), None
    try:
        state = parse(text)
    except StateError as exc:
        return State(), f"annotation {ANNOTATION} is malformed ({exc}); state reset"
    if not trusted(state, now):
        return State(), f"annotation {ANNOTATION} holds times in the future; state reset"
    return state, None
