"""The default policy: unit tests on worked cases and hypothesis properties on its invariants."""

from __future__ import annotations

import math
from dataclasses import replace

from scaler.policy import Observation, PolicyConfig, State, backlog_of, decide

CFG = PolicyConfig(
    min_replicas=0, max_replicas=20, drain_rate_prior=2.0, startup_delay_s=120, target_wait_s=60,
    headroom=0.0,
)


def obs(**kw: object) -> Observation:
    base: dict[str, object] = dict(
        now=1000.0, visible=0, in_flight=0, delayed=0, current=0, ready=0, drained_per_s=None
    )
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


def test_backlog_counts_in_flight_and_optionally_delayed() -> None:
    o = obs(visible=10, in_flight=4, delayed=3)
    assert backlog_of(o, CFG) == 14
    assert backlog_of(o, PolicyConfig(count_in_flight=False)) == 10
    assert backlog_of(o, PolicyConfig(count_delayed=True)) == 17


def test_activation_is_strictly_greater_than_threshold() -> None:
    cfg = PolicyConfig(activation_backlog=5, max_replicas=10)
    assert decide(obs(visible=5), State(), cfg).desired == 0
    assert decide(obs(visible=6), State(), cfg).desired >= 1


def test_burst_from_zero_sized_for_projected_backlog_at_once() -> None:
    # 600 waiting, prior 2 msg/s/replica, target wait 60 s -> 600/60/2 = 5 (no arrivals known)
    d = decide(obs(visible=600), State(), CFG)
    assert d.desired == 5
    assert "0 -> 5" in d.reason


def test_startup_delay_adds_arrivals_during_node_start() -> None:
    prev = State(prev_time=940.0, prev_backlog=0, prev_visible=0, prev_ready=0)
    # backlog grew 0 -> 600 in 60 s: 10 msg/s arriving; over the 120 s start-up another 1200
    d = decide(obs(visible=600), prev, CFG)
    # need = (10 + (600 + 1200) / 60) / 2 = 20
    assert d.desired == 20


def test_not_ready_replicas_are_not_capacity() -> None:
    st_ = State(prev_time=940.0, prev_backlog=400, prev_visible=400, prev_ready=0)
    all_ready = decide(obs(visible=400, current=4, ready=4), st_, CFG)
    none_ready = decide(obs(visible=400, current=4, ready=0), st_, CFG)
    assert none_ready.desired >= all_ready.desired


def test_scale_to_zero_only_after_the_hold_and_never_past_the_cooldown() -> None:
    # nothing learned about gaps: released release_after_s after the queue went idle
    cfg = PolicyConfig(max_replicas=5, release_after_s=300, scale_down_stabilization_s=0)
    state = State(last_active=900.0, history_since=0.0)
    assert decide(obs(now=1100.0, current=2, ready=2), state, cfg).desired == 1
    assert decide(obs(now=1201.0, current=2, ready=2), state, cfg).desired == 0


def test_gaps_learned_keep_a_replica_through_the_usual_gap_within_the_cooldown() -> None:
    cfg = PolicyConfig(max_replicas=5, release_after_s=300, cooldown_to_zero_s=2700,
                       scale_down_stabilization_s=0)
    # the last idle stretches lasted 15-20 min before work came back: keep 1.25 x 20 min
    state = State(last_active=0.0, history_since=0.0, idle_since=0.0, gaps=(900.0, 1200.0))
    assert decide(obs(now=1400.0, current=2, ready=2), state, cfg).desired == 1
    assert decide(obs(now=1501.0, current=2, ready=2), state, cfg).desired == 0
    # gaps longer than the cooldown (batch jobs hours apart) teach nothing worth keeping
    far = replace(state, gaps=(7200.0, 9000.0))
    assert decide(obs(now=301.0, current=2, ready=2), far, cfg).desired == 0
    # and however short the gaps, nothing stays past cooldown_to_zero_s
    short = PolicyConfig(max_replicas=5, cooldown_to_zero_s=600, scale_down_stabilization_s=0)
    assert decide(obs(now=601.0, current=2, ready=2), state, short).desired == 0


def test_an_idle_stretch_that_ends_becomes_a_gap() -> None:
    state = State(history_since=0.0, idle_since=1000.0, last_active=980.0)
    d = decide(obs(now=1600.0, visible=5, current=1, ready=1), state, CFG)
    assert d.state.gaps == (600.0,) and d.state.idle_since is None
    quiet = decide(obs(now=1700.0, current=1, ready=1), d.state, CFG)
    assert quiet.state.idle_since == 1700.0


def test_scale_down_stabilization_takes_max_over_window() -> None:
    cfg = PolicyConfig(max_replicas=10, scale_down_stabilization_s=180, drain_rate_prior=2.0)
    state = State(recommendations=((900.0, 6), (950.0, 4)), last_active=1000.0,
                  history_since=0.0)
    d = decide(obs(now=1000.0, visible=1, current=6, ready=6, drained_per_s=1.0), state, cfg)
    assert d.desired == 6
    later = decide(obs(now=1200.0, visible=1, current=6, ready=6, drained_per_s=1.0), state, cfg)
    assert later.desired < 6


def test_no_history_holds_and_remembers_the_hold() -> None:
    # a fresh or reset state: no scale-down this run, and the held count enters the window
    d = decide(obs(now=1000.0, current=8, ready=8), State(), CFG)
    assert d.desired == 8 and "held" in d.reason
    assert (1000.0, 8) in d.state.recommendations and d.state.history_since == 1000.0
    nxt = decide(obs(now=1020.0, current=8, ready=8), d.state, CFG)
    assert nxt.desired == 8 and "stabilization" in nxt.reason


def test_a_state_with_times_from_the_future_is_no_history() -> None:
    future = State(last_active=10**6, history_since=0.0, recommendations=((10**6, 1),))
    d = decide(obs(now=1000.0, current=6, ready=6), future, CFG)
    assert d.desired == 6 and "future" in d.reason and d.state.history_since == 1000.0


def test_learns_drain_rate_from_saturated_window() -> None:
    state = State(
        prev_time=940.0, prev_backlog=500, prev_visible=480, prev_ready=4, ready_since=600.0,
        drain_rate=8.0, waiting_since=600.0,
    )
    d = decide(obs(visible=480, in_flight=20, current=4, ready=4, drained_per_s=20.0), state, CFG)
    assert d.state.drain_rate == 6.5  # half-way from 8 to 20 msg/s over 4 ready replicas
    assert "measured" in d.reason


def test_a_figure_from_before_the_queue_filled_does_not_lower_the_rate() -> None:
    # visible for 40 s only: the minutes-late figure still holds the quiet minutes before
    state = State(
        prev_time=980.0, prev_backlog=500, prev_visible=480, prev_ready=1, ready_since=0.0,
        drain_rate=20.0, waiting_since=960.0,
    )
    d = decide(obs(visible=480, in_flight=200, current=1, ready=1, drained_per_s=1.0), state, CFG)
    assert d.state.drain_rate == 20.0 and d.state.waiting_since == 960.0


def test_drain_sample_reaching_back_past_a_ready_change_teaches_nothing() -> None:
    # 20 ready until 100 s ago, 1 now: the lagging figure still holds the 20's deletes
    cfg = PolicyConfig(max_replicas=20, drain_rate_prior=2.0, drain_reach_s=120)
    state = State(
        drain_rate=2.0, prev_time=980.0, prev_backlog=0, prev_visible=0, prev_ready=1,
        ready_since=900.0,
    )
    d = decide(obs(visible=0, current=1, ready=1, drained_per_s=40.0), state, cfg)
    assert d.state.drain_rate == 2.0 and d.state.ready_since == 900.0
    # once the count has held for the figure's reach, the same kind of sample is used
    later = decide(obs(now=1100.0, visible=0, current=1, ready=1, drained_per_s=3.0), d.state, cfg)
    assert later.state.drain_rate == 3.0


def test_lagging_drain_figure_after_scale_down_is_not_read_as_arrivals() -> None:
    # backlog steady at 0 and 1 replica ready; the drain figure still reports a big burst's
    # deletes: at most what 1 replica drains counts as served, so no phantom burst is sized
    cfg = PolicyConfig(max_replicas=20, drain_rate_prior=2.0)
    state = State(
        drain_rate=2.0, prev_time=980.0, prev_backlog=0, prev_visible=0, prev_ready=1,
        last_active=900.0, history_since=0.0,
    )
    d = decide(obs(visible=0, current=1, ready=1, drained_per_s=40.0), state, cfg)
    assert d.state.arrival_rate is not None and d.state.arrival_rate <= 2.0
    assert d.desired <= 2  # 2 msg/s with 20 % headroom; 40 msg/s would have asked for 20


def test_saturated_replicas_count_as_draining_at_capacity() -> None:
    # a burst on top of a quiet minute: the drain figure still shows the quiet minute, but
    # replicas holding > 5 s of work at both ends drained at capacity, so arrivals are not 2/s
    cfg = PolicyConfig(max_replicas=20, drain_rate_prior=20.0, startup_delay_s=180)
    state = State(drain_rate=20.0, prev_time=980.0, prev_backlog=200, prev_visible=0,
                  prev_ready=1, last_active=980.0, history_since=0.0)
    d = decide(obs(visible=40, in_flight=200, current=1, ready=1, drained_per_s=1.0), state, cfg)
    assert d.state.arrival_rate is not None and d.state.arrival_rate >= 20.0
    assert d.desired >= 2


def test_unsaturated_window_never_lowers_the_estimate() -> None:
    state = State(drain_rate=5.0, prev_time=940.0, prev_backlog=0, prev_visible=0, prev_ready=4)
    d = decide(obs(visible=0, current=4, ready=4, drained_per_s=2.0), state, CFG)
    assert d.state.drain_rate == 5.0


def test_tolerance_keeps_current_on_small_deviation() -> None:
    cfg = PolicyConfig(max_replicas=50, drain_rate_prior=1.0, startup_delay_s=0, target_wait_s=60)
    # no arrivals known: need = 660/60/1 = 11, 10 % above the 10 running: stays 10
    assert decide(obs(visible=660, current=10, ready=10), State(), cfg).desired == 10
    # 720/60 = 12 is 20 % above: scales
    assert decide(obs(visible=720, current=10, ready=10), State(), cfg).desired == 12


def test_max_step_up_caps_growth() -> None:
    cfg = PolicyConfig(max_replicas=50, max_step_up=2, drain_rate_prior=1.0)
    assert decide(obs(visible=5000, current=3, ready=3), State(), cfg).desired == 5


def test_bounds_respected_and_reported() -> None:
    cfg = PolicyConfig(min_replicas=2, max_replicas=4)
    assert decide(obs(visible=100000), State(), cfg).desired == 4
    assert decide(obs(), State(), cfg).desired == 2


def test_keep_warm_holds_a_fraction_of_the_recent_peak_while_kept_then_releases() -> None:
    cfg = PolicyConfig(
        max_replicas=20, keep_warm_fraction=0.25, keep_warm_s=1800, cooldown_to_zero_s=2700,
        release_after_s=300, scale_down_stabilization_s=180, drain_rate_prior=2.0,
    )
    # 5000 arrived within 20 s: 250 msg/s keep more than the 20 replicas busy
    before = State(prev_time=980.0, prev_backlog=0, prev_visible=0, prev_ready=0,
                   arrival_rate=250.0)
    burst = decide(obs(now=1000.0, visible=5000, current=0, ready=0), before, cfg)
    assert burst.desired == 20 and burst.state.peaks == ((1000.0, 20),)
    # idle since 1100 and the gaps say bursts come back within 20 min: 0.25 x 20 = 5 stay
    quiet = replace(burst.state, last_active=1100.0, recommendations=(), gaps=(1200.0,))
    held = decide(obs(now=2000.0, current=20, ready=20, drained_per_s=0.0), quiet, cfg)
    assert held.desired == 5 and "keep 5 warm" in held.reason
    # past the hold (1.25 x 1200 s) nothing is kept
    gone = decide(obs(now=2700.0, current=5, ready=5, drained_per_s=0.0),
                  replace(held.state, recommendations=()), cfg)
    assert gone.desired == 0


def test_keep_warm_off_keeps_one_during_the_hold() -> None:
    cfg = PolicyConfig(max_replicas=20, keep_warm_fraction=0.0, scale_down_stabilization_s=0,
                       release_after_s=300)
    state = State(last_active=900.0, peaks=((900.0, 20),), history_since=0.0)
    assert decide(obs(now=1000.0, current=20, ready=20), state, cfg).desired == 1


def test_keep_warm_rounds_down_so_a_small_peak_keeps_only_the_one() -> None:
    cfg = PolicyConfig(max_replicas=20, keep_warm_fraction=0.1, scale_down_stabilization_s=0,
                       release_after_s=300)
    state = State(last_active=900.0, peaks=((900.0, 9),), history_since=0.0)
    assert decide(obs(now=1000.0, current=9, ready=9), state, cfg).desired == 1


def test_keep_warm_peak_is_a_sliding_maximum() -> None:
    cfg = PolicyConfig(
        max_replicas=20, keep_warm_fraction=0.5, keep_warm_s=1800, drain_rate_prior=2.0
    )
    # buckets of 1800 / 4 = 450 s: a count in the newest bucket raises its maximum
    state = State(peaks=((0.0, 20), (700.0, 6)), history_since=0.0)
    small = decide(obs(now=1000.0, visible=100, current=2, ready=2), state, cfg)
    assert small.state.peaks == ((0.0, 20), (700.0, 6))
    assert small.desired >= 10  # the floor: 0.5 x 20
    # later the old peak lapses, the smaller recent one (a burst that recurred) is kept
    later = decide(obs(now=1900.0, visible=100, current=10, ready=10), state, cfg)
    assert later.state.peaks[0] == (700.0, 6) and (0.0, 20) not in later.state.peaks
    assert later.desired >= 3


def test_keep_warm_peak_is_what_the_arrivals_keep_busy_not_what_the_warm_ones_left() -> None:
    # the same burst met by 5 warm replicas or by none is remembered as the same peak, so a
    # floor does not shrink the next floor (20 -> 5 warm -> a smaller peak -> nothing warm)
    cfg = PolicyConfig(max_replicas=40, keep_warm_fraction=0.25, drain_rate_prior=2.0)
    prev = State(prev_time=980.0, prev_backlog=0, prev_visible=0, prev_ready=5, drain_rate=2.0)
    warm = decide(obs(visible=400, current=5, ready=5, drained_per_s=None), prev, cfg)
    cold = decide(obs(visible=400, current=0, ready=0), replace(prev, prev_ready=0), cfg)
    assert warm.desired < cold.desired  # the warm replicas do lower what is asked for now
    assert warm.state.peaks == cold.state.peaks


def test_keep_warm_never_wakes_a_deployment_at_zero() -> None:
    cfg = PolicyConfig(max_replicas=20, keep_warm_fraction=1.0, keep_warm_s=3600)
    state = State(peaks=((990.0, 20),))
    assert decide(obs(now=1000.0, current=0, ready=0), state, cfg).desired == 0


def test_a_near_zero_learned_rate_asks_for_the_maximum_without_overflow() -> None:
    # found by tests/chaos' property test: drained 5.5e-307 msg/s in a saturated window
    cfg = PolicyConfig(max_replicas=12, drain_reach_s=0)
    state = State(
        drain_rate=5.5e-307, prev_time=940.0, prev_backlog=50_000, prev_visible=50_000,
        prev_ready=1, ready_since=0.0,
    )
    d = decide(obs(visible=50_000, current=1, ready=1, drained_per_s=5.5e-307), state, cfg)
    assert d.desired == 12


def test_reason_is_one_line() -> None:
    d = decide(obs(visible=10, current=1, ready=1), State(), CFG)
    assert "\n" not in d.reason and math.isfinite(d.desired)


def test_a_subnormal_drain_rate_while_busy_asks_for_max_not_an_overflow() -> None:
    """Found by the chaos suite's property test (this is its shrunk example): a learned drain
    rate of 2.2e-313 messages/s made the keep-warm reference overflow math.ceil, as 3133b65's
    near-zero rate once did in the sizing."""
    cfg = PolicyConfig(min_replicas=0, max_replicas=1, scale_down_stabilization_s=0.0,
                       cooldown_to_zero_s=0.0, startup_delay_s=60)
    snaps = [(0, 0, 0, 1.0, None)] * 4 + [
        (0, 1, 0, 1.0, None), (1, 0, 1, 1.0, None), (1, 0, 1, 300.0, 2.2250738585e-313),
    ]
    state, now, current = State(), 1_800_000_000.0, 0
    for visible, in_flight, ready, dt, drained in snaps:
        now += dt
        obs = Observation(now=now, visible=visible, in_flight=in_flight, delayed=0,
                          current=current, ready=min(ready, current), drained_per_s=drained)
        decision = decide(obs, state, cfg)
        state, current = decision.state, decision.desired
    assert decision.desired == 1


def test_runs_moments_apart_do_not_read_count_jitter_as_arrivals() -> None:
    """SCALER_RUN_INTERVAL_S=0, or a CLI run just after the Lambda's: SQS's approximate counts
    jittering 40 -> 44 over 10 ms read as 400 arrivals a second, and max_replicas GPUs started.
    A run under MIN_SAMPLE_S after the last keeps the arrival rate it had."""
    cfg = PolicyConfig(max_replicas=20, drain_rate_prior=2.0)
    state = State(
        drain_rate=2.0, arrival_rate=1.0, prev_time=999.99, prev_backlog=40, prev_visible=40,
        prev_ready=2, last_active=900.0, history_since=0.0,
    )
    d = decide(obs(visible=44, current=2, ready=2), state, cfg)
    assert d.state.arrival_rate == 1.0
    assert d.desired < 20
    # twenty seconds apart the same growth is a sample: 4 / 20 s on top of the 4/s that two
    # saturated replicas (40 messages waiting) served
    later = replace(state, prev_time=980.0)
    rate = decide(obs(visible=44, current=2, ready=2), later, cfg).state.arrival_rate
    assert rate is not None and math.isclose(rate, 4 / 20 + 2 * 2.0)


def test_steady_load_without_a_drain_figure_does_not_cycle_the_replicas() -> None:
    """SCALER_DRAIN_RATE_SOURCE=prior (or the figure failing): with replicas keeping up, the
    backlog holds steady, growth reads as no arrivals, and the policy scaled down to one
    replica until the backlog tripped the saturation rule, then up again: 68 changes in two
    hours, 172-message backlogs. Steady load here: 2 msg/s, 1 msg/s a replica, 3 replicas
    (2.2 needed with headroom), a decision every 20 s, a 150 s start-up."""
    cfg = PolicyConfig(drain_rate_prior=1.0, startup_delay_s=150.0)
    state, start = State(), 1_700_000_000.0
    now, queued, spec, ready, pending = start, 0.0, 3, 3, []
    changes, peak = 0, 0.0
    while now < start + 2 * 3600:
        for _ in range(20):  # one second at a time: arrivals, start-ups, service
            while pending and pending[0] <= now:
                pending.pop(0)
                ready = min(spec, ready + 1)
            queued += 2.0 - min(queued, ready * 1.0)
            now += 1
        held = min(queued, ready * 10.0)  # each replica holds up to 10 s of its work
        obs = Observation(now=now, visible=int(queued - held), in_flight=int(held), delayed=0,
                          current=spec, ready=ready, drained_per_s=None)
        decision = decide(obs, state, cfg)
        state = decision.state
        if decision.desired > spec:
            pending += [now + 150.0] * (decision.desired - spec)
        elif decision.desired < spec:
            ready = min(ready, decision.desired)
        changes += decision.desired != spec
        spec = decision.desired
        peak = max(peak, queued)
    assert changes == 0 and spec == 3
    assert peak <= 5
