"""How many replicas do we want: the default scaling policy. Pure: no I/O, no clock, no globals.

`decide(observation, state, config)` returns the desired replica count, a one-line reason and the
state to remember until the next run (the runner keeps it in a Deployment annotation).

It keeps what KEDA's aws-sqs-queue scaler under the HPA does right and goes further:

* backlog = visible + in-flight (+ delayed, optional); activation strictly above a threshold for
  0→1; [min, max]; an optional scale-up step cap; a 10 % tolerance band on the unrounded count;
  scale-down stabilization (the max of the recommendations over the window);
* capacity from the *measured* drain rate per ready replica and the arrival rate
  (scaler.estimate), sized for the backlog projected at the moment new capacity could serve
  (`startup_delay_s` later) and drained within `target_wait_s`;
* only *ready* replicas are capacity; never a scale-down below what drains the backlog within the
  stabilization window;
* between bursts, replicas kept warm for as long as the learned gaps say the next burst is likely
  to come (scaler.warm), never past `cooldown_to_zero_s` of idleness: an idle queue reaches
  `min_replicas` after at most cooldown + stabilization, from any state;
* no history (a fresh Deployment, a lost or corrupt annotation, times from the future): the run
  never scales down, and records what it held, so the hold lasts the stabilization window.
"""

from __future__ import annotations

import math
from dataclasses import replace

from scaler.estimate import EPS, MAX_EXACT, estimate_arrivals, learn_drain_rate, needed_replicas
from scaler.policy_types import Decision, Observation, PolicyConfig, State
from scaler.warm import floor_of, hold_s, record_gap, update_peaks

__all__ = ["Decision", "Observation", "PolicyConfig", "State", "backlog_of", "decide", "trusted"]

#: a state holding a time further than this in the future is not trusted (clock skew, hand edits)
FUTURE_SLACK_S = 300.0


def backlog_of(obs: Observation, cfg: PolicyConfig) -> int:
    """KEDA's definition: visible + in-flight (scaleOnInFlight) + delayed (scaleOnDelayed)."""
    backlog = obs.visible
    if cfg.count_in_flight:
        backlog += obs.in_flight
    if cfg.count_delayed:
        backlog += obs.delayed
    return max(0, backlog)


def clamp(value: int, cfg: PolicyConfig) -> int:
    return max(cfg.min_replicas, min(cfg.max_replicas, value))


def times_of(state: State) -> list[float]:
    """Every point in time the state holds."""
    times = [t for t, _ in (*state.recommendations, *state.peaks)]
    times += [
        t
        for t in (state.prev_time, state.last_active, state.last_scale_up, state.ready_since,
                  state.history_since, state.idle_since, state.waiting_since)
        if t is not None
    ]
    return times


def trusted(state: State, now: float) -> bool:
    """A state with times from the future is no history at all."""
    return all(math.isfinite(t) and t <= now + FUTURE_SLACK_S for t in times_of(state))


def _floor_and_idle(
    need: int, why: str, busy: bool, active: bool, current: int, floor: int, peak: int,
    idle_for: float, hold: float,
) -> tuple[int, str]:
    """The count before stabilization: the floor while busy, the warm hold while idle."""
    if current == 0 and not active:
        return 0, "idle at zero: nothing waiting never wakes a GPU"
    if busy:
        if need < max(1, floor):
            need = max(1, floor)
            why = f"busy: at least {need} (keep warm {floor} of peak {peak})"
        return need, why
    if idle_for < hold:
        return max(1, floor), f"idle {idle_for:.0f}s < hold {hold:.0f}s: keep {max(1, floor)} warm"
    return 0, f"idle {idle_for:.0f}s >= hold {hold:.0f}s"


def _stabilize(
    need: int, why: str, obs: Observation, state: State, backlog: int, mu: float, cfg: PolicyConfig
) -> tuple[int, str, tuple[tuple[float, int], ...]]:
    window = cfg.scale_down_stabilization_s
    # a recommendation stamped ahead of this run's clock (a trusted skew: up to FUTURE_SLACK_S)
    # counts as made now and is kept as made now: left at its own time it would hold the count
    # for its lead plus the window, past the bound an idle queue is promised
    recs = tuple(
        (stamped, n)
        for t, n in state.recommendations
        if obs.now - (stamped := min(t, obs.now)) < window
    )
    recs = (*recs, (obs.now, need))
    desired, current = need, obs.current
    if need < current:
        stabilized = max(n for _, n in recs)
        if stabilized > need:
            desired = min(current, stabilized)
            why = f"scale-down stabilization ({window:.0f}s)"
        drainable = obs.ready * mu * window
        if desired < current and backlog > drainable:
            desired, why = current, f"backlog {backlog} > {drainable:.0f} drained in {window:.0f}s"
        if desired < current and backlog > 0:
            keep = current if window <= 0 else min(current, math.ceil(backlog / (mu * window)))
            if keep > desired:
                desired, why = keep, f"backlog {backlog} needs {keep} to drain in {window:.0f}s"
    return desired, why, recs


def decide(obs: Observation, state: State, cfg: PolicyConfig) -> Decision:
    current = max(0, obs.current)
    obs = replace(obs, current=current, ready=max(0, obs.ready))
    note = ""
    if not trusted(state, obs.now):
        state, note = State(), " (state held times from the future: reset)"
    fresh = state.history_since is None
    since = obs.now if state.history_since is None else state.history_since
    backlog = backlog_of(obs, cfg)
    active = backlog > cfg.activation_backlog
    busy = active or (obs.drained_per_s or 0.0) > 0
    last_active = obs.now if busy else state.last_active
    gaps, idle_since = record_gap(state.gaps, state.idle_since, obs.now, busy)
    mu, mu_source = learn_drain_rate(obs, state, cfg)
    arrivals = estimate_arrivals(obs, state, backlog, mu)
    lam = arrivals or 0.0
    need, projected, exact = needed_replicas(obs, state, backlog, mu, lam, cfg)
    why = "sized for projected backlog"
    # like the HPA's usageRatio: compare the wanted capacity (unrounded) with what runs
    if current > 0 and need > 0 and abs(exact / current - 1.0) <= cfg.tolerance + EPS:
        need, why = current, "within tolerance"
    if need < current and obs.drained_per_s is None and obs.in_flight > 0:
        # nothing says what the replicas serve (SCALER_DRAIN_RATE_SOURCE=prior, or the figure
        # failed): a steady backlog then reads as no arrivals, and scaling down the replicas
        # keeping up with it cycled the count every few minutes, piling up a backlog each time
        need, why = current, "held: in-flight work, and no drain figure says what is served"
    # the replicas a burst's arrivals keep busy (not what the warm ones left to do, nor the
    # backlog a cold start piles up): the reference for what to keep warm (scaler.warm). The
    # rate must have held over two runs: one noisy sample would set the floor for hours
    held = min(lam, state.arrival_rate or 0.0)
    # the same clamp as needed_replicas: a learned rate near zero must not overflow math.ceil
    steady = math.ceil(min(held * (1.0 + cfg.headroom) / mu, MAX_EXACT) - EPS) if active else 0
    peaks, peak = update_peaks(state.peaks, obs.now, clamp(steady, cfg), cfg)
    floor = floor_of(peak, cfg)
    # a trusted skew (up to FUTURE_SLACK_S ahead) counts as now, as for the recommendations:
    # a negative idle time would keep an idle queue warm for that lead past its bound
    idle_for = max(0.0, obs.now - (last_active if last_active is not None else since))
    hold = hold_s(gaps, cfg)
    need, why = _floor_and_idle(
        need, why, busy, active, current, floor, peak, idle_for, hold
    )
    desired, why, recs = _stabilize(need, why, obs, state, backlog, mu, cfg)
    if fresh and desired < current:
        # no stabilization history to trust: hold, and remember the hold for the whole window
        desired = min(current, cfg.max_replicas)
        why = "held: no history (new, lost or reset state)"
        recs = (*recs[:-1], (obs.now, desired))
    if cfg.max_step_up is not None and desired > current + cfg.max_step_up:
        desired, why = current + cfg.max_step_up, f"scale-up capped at +{cfg.max_step_up}"
    bounded = clamp(desired, cfg)
    if bounded != desired:
        why = f"bounded to [{cfg.min_replicas}, {cfg.max_replicas}]"
    desired = bounded

    new_state = State(
        recommendations=recs,
        last_active=last_active,
        drain_rate=mu if mu_source == "measured" else state.drain_rate,
        arrival_rate=arrivals,
        prev_time=obs.now,
        prev_backlog=backlog,
        prev_visible=obs.visible,
        prev_ready=obs.ready,
        last_scale_up=obs.now if desired > current else state.last_scale_up,
        ready_since=obs.now
        if state.ready_since is None or state.prev_ready != obs.ready
        else state.ready_since,
        peaks=peaks,
        history_since=since,
        idle_since=idle_since,
        gaps=gaps,
        waiting_since=None
        if obs.visible <= 0
        else (state.waiting_since if state.waiting_since is not None else obs.now),
    )
    reason = (
        f"backlog {backlog} (visible {obs.visible}, in-flight {obs.in_flight}, "
        f"delayed {obs.delayed}); ready {obs.ready}/{current}; "
        f"drain {mu:.2f}/s/replica ({mu_source}); arrivals {lam:.2f}/s; "
        f"projected {projected:.0f} after {cfg.startup_delay_s:.0f}s start-up; "
        f"{current} -> {desired}: {why}{note}"
    )
    return Decision(
        desired=desired, reason=reason, state=new_state, backlog=backlog, drain_rate=mu
    )
