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
from dataclasses import dataclass, replace

from scaler.estimate import EPS, MAX_EXACT, estimate_arrivals, learn_drain_rate, needed_replicas
from scaler.warm import floor_of, hold_s, record_gap, update_peaks

#: a state holding a time further than this in the future is not trusted (clock skew, hand edits)
FUTURE_SLACK_S = 300.0


@dataclass(frozen=True)
class PolicyConfig:
    """Per-target knobs. Defaults tuned in the simulator on trace seeds 0–4 (docs/scaler.md)."""

    min_replicas: int = 0
    max_replicas: int = 10
    #: KEDA's queueLength, as an extra floor. None: capacity from the drain rate alone.
    target_backlog_per_replica: float | None = None
    activation_backlog: int = 0
    count_in_flight: bool = True
    count_delayed: bool = False
    scale_down_stabilization_s: float = 60.0
    #: The longest replicas are kept once the queue is idle (then min_replicas, after the window).
    cooldown_to_zero_s: float = 900.0
    #: Kept this long after the queue went idle when the learned gaps don't say a burst is near.
    release_after_s: float = 60.0
    #: None: no cap (the policy already sizes from measured throughput).
    max_step_up: int | None = None
    startup_delay_s: float = 150.0
    drain_rate_prior: float = 1.0
    #: Drain the projected backlog within this many seconds once the capacity is there.
    target_wait_s: float = 480.0
    #: Capacity above the arrival rate (0.1: 10 % more), so Poisson peaks do not queue.
    headroom: float = 0.1
    tolerance: float = 0.1
    #: How far back the drain figure reaches (CloudWatch: the 300 s look-back; Prometheus: the
    #: rate's range). A sample teaches the per-replica rate only if the ready count held that long.
    drain_reach_s: float = 300.0
    #: Keep this fraction of the largest count a burst wanted within `keep_warm_s` (0: off).
    keep_warm_fraction: float = 0.4
    keep_warm_s: float = 28800.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                f"got min={self.min_replicas} max={self.max_replicas}"
            )
        if self.drain_rate_prior <= 0 or self.target_wait_s <= 0:
            raise ValueError("drain_rate_prior and target_wait_s must be > 0")
        if self.target_backlog_per_replica is not None and self.target_backlog_per_replica <= 0:
            raise ValueError("target_backlog_per_replica must be > 0")
        if self.max_step_up is not None and self.max_step_up < 1:
            raise ValueError("max_step_up must be >= 1")
        if min(self.drain_reach_s, self.cooldown_to_zero_s, self.release_after_s) < 0:
            raise ValueError("drain_reach_s, cooldown_to_zero_s and release_after_s must be >= 0")
        if self.headroom < 0 or self.scale_down_stabilization_s < 0:
            raise ValueError("headroom and scale_down_stabilization_s must be >= 0")
        if not 0.0 <= self.keep_warm_fraction <= 1.0 or self.keep_warm_s < 0:
            raise ValueError("need 0 <= keep_warm_fraction <= 1 and keep_warm_s >= 0")


@dataclass(frozen=True)
class Observation:
    """What one run sees: SQS's approximate counts; replicas from the scale and status."""

    now: float
    visible: int
    in_flight: int
    delayed: int
    current: int
    ready: int
    #: Messages deleted per second by all replicas over the drain window (None: no data).
    drained_per_s: float | None = None
    #: published 1-minute mean backlogs, oldest first (CloudWatch; the simulator's SageMaker
    #: baseline reads them, the default policy does not)
    backlog_minutes: tuple[float, ...] = ()


@dataclass(frozen=True)
class State:
    """Remembered between runs (JSON in an annotation; see scaler.state)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    last_active: float | None = None
    #: learned messages/s one ready replica drains
    drain_rate: float | None = None
    arrival_rate: float | None = None
    prev_time: float | None = None
    prev_backlog: int | None = None
    prev_visible: int | None = None
    prev_ready: int | None = None
    last_scale_up: float | None = None
    #: when the ready count was last seen to change (drain samples older than that are mixed)
    ready_since: float | None = None
    #: (bucket start, largest bounded count wanted in it): keep_warm_s in WARM_BUCKETS buckets
    peaks: tuple[tuple[float, int], ...] = ()
    #: when this history began; None: no history (fresh or reset state)
    history_since: float | None = None
    #: when the queue last went idle (None: busy)
    idle_since: float | None = None
    #: the last idle stretches that ended with work coming back (s)
    gaps: tuple[float, ...] = ()
    #: since when messages have been visible (waiting for a replica) without a break
    waiting_since: float | None = None


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    state: State
    backlog: int
    #: the per-replica drain rate this decision used (learned or the prior)
    drain_rate: float = 0.0


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
    recs = tuple((t, n) for t, n in state.recommendations if obs.now - t < window)
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
    # the replicas a burst's arrivals keep busy (not what the warm ones left to do, nor the
    # backlog a cold start piles up): the reference for what to keep warm (scaler.warm). The
    # rate must have held over two runs: one noisy sample would set the floor for hours
    held = min(lam, state.arrival_rate or 0.0)
    # the same clamp as needed_replicas: a learned rate near zero must not overflow math.ceil
    steady = math.ceil(min(held * (1.0 + cfg.headroom) / mu, MAX_EXACT) - EPS) if active else 0
    peaks, peak = update_peaks(state.peaks, obs.now, clamp(steady, cfg), cfg)
    floor = floor_of(peak, cfg)
    idle_for = obs.now - (last_active if last_active is not None else since)
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
