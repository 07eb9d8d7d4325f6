"""What the policy learns from each run: the drain rate per replica and the arrival rate, and the
replicas that drain the backlog projected at the moment new capacity could serve. Pure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scaler.policy_types import Observation, PolicyConfig, State

EPS = 1e-9
MAX_EXACT = 1e9
#: seconds of work per ready replica above which the replicas are taken to be saturated
SATURATED_S = 5.0
#: the shortest time between two runs from which an arrival rate is learned (SQS's counts are
#: approximate: a few messages' jitter over a second is not a rate)
MIN_SAMPLE_S = 5.0


def learn_drain_rate(obs: Observation, state: State, cfg: PolicyConfig) -> tuple[float, str]:
    """Per-replica drain rate and where it came from.

    A window where work was waiting all along (visible > 0 since before the figure's window
    began: `waiting_since`) measures capacity: the estimate moves half-way to it. (Visible at both
    ends of the last 20 s is not enough: the figure is minutes late and still shows the quiet
    minutes before a burst; learning from them halved the rate and doubled the next ask.) A
    window where the queue ran dry only proves a lower bound (replicas drained at least that
    much), so it can raise the estimate, never lower it. The
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
        saturated = (
            obs.visible > 0
            and state.waiting_since is not None
            and obs.now - state.waiting_since >= cfg.drain_reach_s
        )
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

    The drain figure lags (CloudWatch publishes minutes late) while the counts are fresher: right
    after a scale-down it still reports what the replicas that are gone drained, which read as
    phantom arrivals and woke a burst's worth of GPUs for nothing. What was served between two
    runs cannot exceed what the replicas ready then could drain, so it is capped at that.
    """
    if state.prev_time is None or state.prev_backlog is None or obs.now <= state.prev_time:
        return obs.drained_per_s
    dt = obs.now - state.prev_time
    if dt < MIN_SAMPLE_S:
        # runs moments apart (SCALER_RUN_INTERVAL_S=0, a CLI run just after the Lambda's): the
        # counts' jitter over milliseconds read as thousands of arrivals per second
        return state.arrival_rate if state.arrival_rate is not None else obs.drained_per_s
    served = 0.0
    if obs.drained_per_s is not None:
        serving = max(state.prev_ready or 0, obs.ready)
        served = min(obs.drained_per_s, serving * drain_rate)
    # replicas that held more than SATURATED_S of work at both ends drained at capacity: the
    # drain figure (minutes late) still shows the quiet minutes before a burst
    capacity = (state.prev_ready or 0) * drain_rate
    if capacity > 0 and min(backlog, state.prev_backlog) >= capacity * SATURATED_S:
        served = max(served, capacity)
    sample = min(MAX_EXACT, max(0.0, (backlog - state.prev_backlog) / dt + served))
    old = state.arrival_rate
    if old is None or sample >= old:
        return sample
    return 0.5 * old + 0.5 * sample


def needed_replicas(
    obs: Observation, state: State, backlog: int, mu: float, arrivals: float, cfg: PolicyConfig
) -> tuple[int, float, float]:
    """(replicas, projected backlog, unrounded replicas) that drain the backlog projected at the
    moment new capacity could serve within `target_wait_s`, and keep up with the arrivals.

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
    exact = (arrivals * (1.0 + cfg.headroom) + projected / cfg.target_wait_s) / mu
    if cfg.target_backlog_per_replica is not None:
        exact = max(exact, backlog / cfg.target_backlog_per_replica)
    # a learned rate near zero (stuck workers) makes this astronomically large or inf; clamp()
    # bounds the result, this keeps math.ceil from overflowing on the way
    exact = min(exact, MAX_EXACT)
    need = math.ceil(exact - EPS) if exact > 0 else 0
    return need, projected, exact
