"""How many replicas do we want: the default scaling policy. Pure: no I/O, no clock, no globals.

`decide(observation, state, config)` returns the desired replica count, a one-line reason and the
state to remember until the next run (the runner keeps it in a Deployment annotation).

It does what KEDA's aws-sqs-queue scaler under the HPA does, then goes further:

* backlog = visible + in-flight (+ delayed, optional); activation strictly above a threshold for
  0→1; scale to zero only `cooldown_to_zero_s` after the backlog was last above it; [min, max];
  an optional scale-up step cap; scale-down stabilization (the max of the recommendations over
  the window); a 10 % tolerance band so noisy counts do not flap.
* capacity comes from the *measured* drain rate per serving replica (learned from the deletes the
  drain source reports, a configured prior until there is data), not from a fixed "messages per
  replica" number: a GPU that drains 40 msg/s and one that drains 0.5 msg/s need different counts.
* the node start-up delay: replicas asked for now serve only `startup_delay_s` later, so the
  policy sizes for the backlog projected at that moment (arrivals keep coming meanwhile).
* only *ready* replicas count as capacity: a pod still loading its model or draining after
  SIGTERM is not serving.
* scale-down as soon as the backlog allows, never while the backlog exceeds what the serving
  replicas drain within the stabilization window (so work is not killed mid-burst).
* keep warm a fraction of a recent burst's capacity for a while (`keep_warm_fraction` of the
  largest count a burst in the last `keep_warm_s` wanted, sized from cold): the next unannounced
  burst meets some ready replicas instead of waiting out the whole node start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

EPS = 1e-9
MAX_EXACT = 1e9
#: the keep-warm sliding maximum's resolution (see keep_warm_floor)
WARM_BUCKETS = 4


@dataclass(frozen=True)
class PolicyConfig:
    """Per-target knobs (defaults are the README's)."""

    min_replicas: int = 0
    max_replicas: int = 10
    #: KEDA's queueLength. None: derived, = drain rate per replica × target_wait_s.
    target_backlog_per_replica: float | None = None
    activation_backlog: int = 0
    count_in_flight: bool = True
    count_delayed: bool = False
    scale_down_stabilization_s: float = 120.0
    cooldown_to_zero_s: float = 300.0
    #: None: no cap (the policy already sizes from measured throughput).
    max_step_up: int | None = None
    startup_delay_s: float = 150.0
    drain_rate_prior: float = 1.0
    #: Drain the projected backlog within this many seconds once the capacity is there.
    target_wait_s: float = 60.0
    tolerance: float = 0.1
    #: How far back the drain figure reaches (CloudWatch: the 300 s look-back; Prometheus: the
    #: rate's range). A sample teaches the per-replica rate only if the ready count held that long.
    drain_reach_s: float = 300.0
    #: Keep warm this fraction of the largest replica count wanted within `keep_warm_s` (0: off).
    #: An unannounced burst waits out a GPU node's start-up under any policy with nothing warm;
    #: bursts that came once tend to come again, so some of their capacity is kept for a while.
    keep_warm_fraction: float = 0.25
    #: How long a peak is remembered (set it above the usual gap between your bursts).
    keep_warm_s: float = 3600.0

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
        if self.drain_reach_s < 0:
            raise ValueError("drain_reach_s must be >= 0")
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


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    state: State
    backlog: int


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


def learn_drain_rate(obs: Observation, state: State, cfg: PolicyConfig) -> tuple[float, str]:
    """Per-replica drain rate and where it came from.

    A window where work was waiting all along (visible > 0 at both ends) measures capacity: the
    estimate moves half-way to it. A window where the queue ran dry only proves a lower bound
    (replicas drained at least that much), so it can raise the estimate, never lower it. The
    sample is used only when the ready count has not changed for as far back as the figure
    reaches (`drain_reach_s`): a minute drained by 20 replicas divided by the 1 left after a
    scale-down taught a 10x rate, and the next burst got a tenth of the replicas it needed.
    """
    learned = state.drain_rate
    rate = obs.drained_per_s
    steady = (
        state.prev_ready == obs.ready
        and state.ready_since is not None
        and obs.now - state.ready_since >= cfg.drain_reach_s
    )
    if rate is not None and obs.ready > 0 and steady:
        per_replica = rate / obs.ready
        saturated = obs.visible > 0 and (state.prev_visible or 0) > 0
        if saturated and per_replica > 0:
            learned = per_replica if learned is None else 0.5 * learned + 0.5 * per_replica
        elif per_replica > (learned if learned is not None else cfg.drain_rate_prior):
            learned = per_replica
    if learned is None or learned <= 0:
        return cfg.drain_rate_prior, "prior"
    return learned, "measured"


def estimate_arrivals(
    obs: Observation, state: State, backlog: int, drain_rate: float
) -> float | None:
    """Arrival rate = growth of the backlog + what was served, smoothed (fast up, slow down).

    The drain figure lags (CloudWatch publishes minutes late) while the counts are fresh: right
    after a scale-down it still reports what the replicas that are gone drained, which read as
    phantom arrivals and woke a burst's worth of GPUs for nothing. What was served between two
    runs cannot exceed what the replicas ready then could drain, so it is capped at that.
    """
    if state.prev_time is None or state.prev_backlog is None or obs.now <= state.prev_time:
        return obs.drained_per_s
    dt = obs.now - state.prev_time
    if obs.drained_per_s is not None:
        serving = max(state.prev_ready or 0, obs.ready)
        served = min(obs.drained_per_s, serving * drain_rate)
    elif (state.prev_visible or 0) > 0:
        # no drain data: replicas with work waiting drained at capacity
        served = (state.prev_ready or 0) * drain_rate
    else:
        served = 0.0
    sample = max(0.0, (backlog - state.prev_backlog) / dt + served)
    old = state.arrival_rate
    if old is None or sample >= old:
        return sample
    return 0.5 * old + 0.5 * sample


def needed_replicas(
    obs: Observation, state: State, backlog: int, mu: float, arrivals: float, cfg: PolicyConfig
) -> tuple[int, float, float]:
    """Replicas that drain the backlog projected at the moment new capacity could serve.

    Replicas asked for now serve `startup_delay_s` later; ready replicas drain meanwhile, and
    replicas already starting (spec > ready) join after what is left of their delay.
    """
    delay = cfg.startup_delay_s
    starting = max(0, obs.current - obs.ready)
    if state.last_scale_up is not None:
        starting_left = max(0.0, delay - (obs.now - state.last_scale_up))
    else:
        starting_left = delay
    projected = (
        backlog
        + arrivals * delay
        - obs.ready * mu * delay
        - starting * mu * (delay - starting_left)
    )
    projected = max(0.0, projected)
    need_rate = arrivals + projected / cfg.target_wait_s
    exact = need_rate / mu
    if cfg.target_backlog_per_replica is not None:
        exact = max(exact, backlog / cfg.target_backlog_per_replica)
    # a learned rate near zero (stuck workers) makes this astronomically large or inf; clamp()
    # bounds the result, this keeps math.ceil from overflowing on the way
    exact = min(exact, MAX_EXACT)
    need = math.ceil(exact - EPS) if exact > 0 else 0
    return need, projected, exact


def keep_warm_floor(
    obs: Observation, state: State, need: int, cfg: PolicyConfig
) -> tuple[tuple[tuple[float, int], ...], int, int]:
    """(peaks to remember, peak, floor): keep warm a fraction of the largest count wanted lately.

    A burst that arrives with nothing warm waits for a GPU node to start (minutes) however fast
    it is detected. Keeping all of a burst's replicas until the next one costs GPU-hours; keeping
    none makes every burst wait out the start-up. The middle: keep
    `floor(keep_warm_fraction × peak)` replicas, peak = the largest `need` within the last
    `keep_warm_s` (the caller passes the count sized as if nothing were warm; a sliding maximum
    kept in WARM_BUCKETS buckets, so it spans between (1 - 1/WARM_BUCKETS) × keep_warm_s and
    keep_warm_s). Recurring bursts keep it alive; once they stop, it lapses. Rounded down: a
    fraction of a small peak is not worth an idle GPU.
    """
    if cfg.keep_warm_s <= 0:
        return (), 0, 0
    width = cfg.keep_warm_s / WARM_BUCKETS
    peaks = [(t, n) for t, n in state.peaks if obs.now - t < cfg.keep_warm_s]
    bounded = clamp(need, cfg)
    if bounded > 0:
        if peaks and obs.now - peaks[-1][0] < width:
            t, n = peaks[-1]
            peaks[-1] = (t, max(n, bounded))
        else:
            peaks.append((obs.now, bounded))
    peak = max((n for _, n in peaks), default=0)
    return tuple(peaks), peak, math.floor(cfg.keep_warm_fraction * peak + EPS)


def decide(obs: Observation, state: State, cfg: PolicyConfig) -> Decision:
    backlog = backlog_of(obs, cfg)
    current = max(0, obs.current)
    ready = max(0, min(obs.ready, max(current, obs.ready)))
    obs = replace(obs, current=current, ready=ready)
    active = backlog > cfg.activation_backlog
    last_active = obs.now if active else state.last_active
    mu, mu_source = learn_drain_rate(obs, state, cfg)
    arrivals = estimate_arrivals(obs, state, backlog, mu)
    lam = arrivals or 0.0
    need, projected, exact = needed_replicas(obs, state, backlog, mu, lam, cfg)
    why = "sized for projected backlog"

    # like the HPA's usageRatio: compare the wanted capacity (unrounded) with what runs
    if current > 0 and need > 0 and abs(exact / current - 1.0) <= cfg.tolerance + EPS:
        need, why = current, "within tolerance"
    if active:
        if need < 1:
            need, why = 1, "active: at least one replica"
    elif current == 0 and need > 0 and backlog == 0:
        # below activation and nothing waiting: arrivals estimate alone never wakes a GPU
        need, why = 0, "idle"
    elif current == 0:
        need, why = 0, f"backlog {backlog} <= activation {cfg.activation_backlog}"
    if need == 0 and current > 0:
        since = None if last_active is None else obs.now - last_active
        if since is None or since < cfg.cooldown_to_zero_s:
            need = 1
            why = "cooling down before zero"

    # a burst's size as if nothing had been warm: measured with the warm replicas' help it would
    # shrink the next floor, and the one after would meet nothing warm again
    cold_need = (
        needed_replicas(replace(obs, current=0, ready=0), state, backlog, mu, lam, cfg)[0]
        if active
        else 0
    )
    peaks, peak, floor = keep_warm_floor(obs, state, cold_need, cfg)
    # the floor keeps replicas, it never wakes a Deployment at zero with nothing waiting
    if need < floor and (current > 0 or active):
        need = floor
        why = f"keep warm {floor} ({cfg.keep_warm_fraction:g} of peak {peak} wanted recently)"
    window = cfg.scale_down_stabilization_s
    recs = tuple((t, n) for t, n in state.recommendations if obs.now - t < window)
    recs = (*recs, (obs.now, need))
    desired = need
    if need < current:
        stabilized = max(n for _, n in recs)
        if stabilized > need:
            desired = min(current, stabilized)
            why = f"scale-down stabilization ({window:.0f}s)"
        drainable = ready * mu * window
        if desired < current and backlog > drainable:
            desired = current
            why = f"backlog {backlog} > {drainable:.0f} the ready replicas drain in {window:.0f}s"
    if cfg.max_step_up is not None and desired > current + cfg.max_step_up:
        desired = current + cfg.max_step_up
        why = f"scale-up capped at +{cfg.max_step_up}"
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
        prev_ready=ready,
        last_scale_up=obs.now if desired > current else state.last_scale_up,
        ready_since=obs.now
        if state.ready_since is None or state.prev_ready != ready
        else state.ready_since,
        peaks=peaks,
    )
    reason = (
        f"backlog {backlog} (visible {obs.visible}, in-flight {obs.in_flight}, "
        f"delayed {obs.delayed}); ready {ready}/{current}; "
        f"drain {mu:.2f}/s/replica ({mu_source}); arrivals {lam:.2f}/s; "
        f"projected {projected:.0f} after {cfg.startup_delay_s:.0f}s start-up; "
        f"{current} -> {desired}: {why}"
    )
    return Decision(desired=desired, reason=reason, state=new_state, backlog=backlog)
