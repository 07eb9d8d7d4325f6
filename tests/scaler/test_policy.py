"""The default policy: unit tests on worked cases and hypothesis properties on its invariants."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.policy import Observation, PolicyConfig, State, backlog_of, decide

CFG = PolicyConfig(min_replicas=0, max_replicas=20, drain_rate_prior=2.0, startup_delay_s=120)


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


def test_scale_to_zero_only_after_cooldown() -> None:
    cfg = PolicyConfig(max_replicas=5, cooldown_to_zero_s=300, scale_down_stabilization_s=0)
    state = State(last_active=900.0)
    assert decide(obs(now=1000.0, current=2, ready=2), state, cfg).desired == 1
    assert decide(obs(now=1201.0, current=2, ready=2), state, cfg).desired == 0


def test_scale_down_stabilization_takes_max_over_window() -> None:
    cfg = PolicyConfig(max_replicas=10, scale_down_stabilization_s=180, drain_rate_prior=2.0)
    state = State(recommendations=((900.0, 6), (950.0, 4)), last_active=1000.0)
    d = decide(obs(now=1000.0, visible=1, current=6, ready=6, drained_per_s=1.0), state, cfg)
    assert d.desired == 6
    later = decide(obs(now=1200.0, visible=1, current=6, ready=6, drained_per_s=1.0), state, cfg)
    assert later.desired < 6


def test_learns_drain_rate_from_saturated_window() -> None:
    state = State(
        prev_time=940.0, prev_backlog=500, prev_visible=480, prev_ready=4, ready_since=600.0
    )
    d = decide(obs(visible=480, in_flight=20, current=4, ready=4, drained_per_s=20.0), state, CFG)
    assert d.state.drain_rate == 5.0  # 20 msg/s over 4 ready replicas
    assert "measured" in d.reason


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
        last_active=900.0,
    )
    d = decide(obs(visible=0, current=1, ready=1, drained_per_s=40.0), state, cfg)
    assert d.state.arrival_rate is not None and d.state.arrival_rate <= 2.0
    assert d.desired <= 1


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


def test_keep_warm_holds_a_fraction_of_the_recent_peak_then_releases() -> None:
    cfg = PolicyConfig(
        max_replicas=20, keep_warm_fraction=0.25, keep_warm_s=1800, cooldown_to_zero_s=300,
        scale_down_stabilization_s=180, drain_rate_prior=2.0,
    )
    burst = decide(obs(now=1000.0, visible=5000, current=0, ready=0), State(), cfg)
    assert burst.desired == 20 and burst.state.peaks == ((1000.0, 20),)
    # the queue has been empty for long (past cooldown and stabilization): 0.25 x 20 = 5 stay
    quiet = replace(burst.state, last_active=1100.0, recommendations=())
    held = decide(obs(now=2000.0, current=20, ready=20, drained_per_s=0.0), quiet, cfg)
    assert held.desired == 5 and "keep warm 5" in held.reason
    # keep_warm_s after the peak it has lapsed: the cooldown to zero applies again
    gone = decide(obs(now=2800.0, current=5, ready=5, drained_per_s=0.0), held.state, cfg)
    assert gone.desired == 0 and gone.state.peaks == ()


def test_keep_warm_off_releases_to_zero() -> None:
    cfg = PolicyConfig(max_replicas=20, keep_warm_fraction=0.0, scale_down_stabilization_s=0)
    state = State(last_active=0.0, peaks=((900.0, 20),))
    assert decide(obs(now=1000.0, current=20, ready=20), state, cfg).desired == 0


def test_keep_warm_rounds_down_so_a_small_peak_keeps_nothing() -> None:
    # one stray message wanted 1 replica: a tenth of it is not worth a GPU for half an hour
    cfg = PolicyConfig(max_replicas=20, keep_warm_fraction=0.1, scale_down_stabilization_s=0)
    state = State(last_active=0.0, peaks=((900.0, 1),))
    assert decide(obs(now=1000.0, current=1, ready=1), state, cfg).desired == 0


def test_keep_warm_peak_is_a_sliding_maximum() -> None:
    cfg = PolicyConfig(
        max_replicas=20, keep_warm_fraction=0.5, keep_warm_s=1800, drain_rate_prior=2.0
    )
    # buckets of 1800 / 4 = 450 s: a count in the newest bucket raises its maximum
    state = State(peaks=((0.0, 20), (700.0, 6)))
    small = decide(obs(now=1000.0, visible=100, current=2, ready=2), state, cfg)
    assert small.state.peaks == ((0.0, 20), (700.0, 6))
    assert small.desired >= 10  # the floor: 0.5 x 20
    # later the old peak lapses, the smaller recent one (a burst that recurred) is kept
    quiet = replace(state, last_active=0.0)
    later = decide(obs(now=1900.0, current=10, ready=10, drained_per_s=0.0), quiet, cfg)
    assert later.state.peaks == ((700.0, 6),)
    assert later.desired == 3 and "keep warm 3" in later.reason


def test_keep_warm_peak_is_the_bursts_size_from_cold_not_what_the_warm_ones_left() -> None:
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


# ---------------------------------------------------------------- properties

counts = st.integers(min_value=0, max_value=100_000)
replicas = st.integers(min_value=0, max_value=60)


@st.composite
def configs(draw: st.DrawFn) -> PolicyConfig:
    low = draw(st.integers(min_value=0, max_value=10))
    high = draw(st.integers(min_value=max(low, 1), max_value=60))
    return PolicyConfig(
        min_replicas=low,
        max_replicas=high,
        activation_backlog=draw(st.integers(min_value=0, max_value=20)),
        scale_down_stabilization_s=draw(st.sampled_from([0.0, 60.0, 180.0, 300.0])),
        cooldown_to_zero_s=draw(st.sampled_from([0.0, 300.0])),
        startup_delay_s=draw(st.sampled_from([0.0, 60.0, 150.0, 300.0])),
        drain_rate_prior=draw(st.floats(min_value=0.05, max_value=100)),
        target_wait_s=draw(st.sampled_from([10.0, 60.0, 300.0])),
        max_step_up=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=10))),
        keep_warm_fraction=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        keep_warm_s=draw(st.sampled_from([0.0, 600.0, 1800.0])),
    )


@st.composite
def states(draw: st.DrawFn) -> State:
    now = 10_000.0
    if draw(st.booleans()):
        return State()
    recs = tuple(
        (now - draw(st.floats(min_value=1, max_value=600)), draw(replicas))
        for _ in range(draw(st.integers(min_value=0, max_value=6)))
    )
    return State(
        recommendations=recs,
        last_active=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=now))),
        drain_rate=draw(st.one_of(st.none(), st.floats(min_value=0.01, max_value=100))),
        arrival_rate=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1000))),
        prev_time=now - 60,
        prev_backlog=draw(counts),
        prev_visible=draw(counts),
        prev_ready=draw(replicas),
        peaks=tuple(
            (now - draw(st.floats(min_value=0, max_value=4000)), draw(replicas))
            for _ in range(draw(st.integers(min_value=0, max_value=5)))
        ),
    )


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    current = draw(replicas)
    return Observation(
        now=10_000.0,
        visible=draw(counts),
        in_flight=draw(st.integers(min_value=0, max_value=5000)),
        delayed=draw(st.integers(min_value=0, max_value=5000)),
        current=current,
        ready=draw(st.integers(min_value=0, max_value=current)),
        drained_per_s=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1000))),
    )


@settings(max_examples=400, deadline=None)
@given(observations(), states(), configs())
def test_always_within_bounds(o: Observation, s: State, cfg: PolicyConfig) -> None:
    d = decide(o, s, cfg)
    assert cfg.min_replicas <= d.desired <= cfg.max_replicas


@settings(max_examples=400, deadline=None)
@given(observations(), states(), configs())
def test_never_scales_down_while_backlog_exceeds_window_drain(
    o: Observation, s: State, cfg: PolicyConfig
) -> None:
    d = decide(o, s, cfg)
    rate = d.state.drain_rate or cfg.drain_rate_prior
    drainable = o.ready * rate * cfg.scale_down_stabilization_s
    if d.backlog > drainable and o.current <= cfg.max_replicas:
        assert d.desired >= o.current


@settings(max_examples=400, deadline=None)
@given(observations(), states(), configs(), st.integers(min_value=1, max_value=50_000))
def test_monotone_in_backlog(o: Observation, s: State, cfg: PolicyConfig, extra: int) -> None:
    low = decide(o, s, cfg)
    more = Observation(**{**o.__dict__, "visible": o.visible + extra})
    high = decide(more, s, cfg)
    assert high.desired >= low.desired


@settings(max_examples=200, deadline=None)
@given(observations(), configs())
def test_zero_backlog_with_no_history_never_wakes_from_zero(
    o: Observation, cfg: PolicyConfig
) -> None:
    quiet = {"visible": 0, "in_flight": 0, "delayed": 0, "current": 0, "ready": 0}
    idle = Observation(**{**o.__dict__, **quiet})
    assert decide(idle, State(), cfg).desired == cfg.min_replicas


@settings(max_examples=200, deadline=None)
@given(observations(), states(), configs())
def test_nothing_waiting_never_wakes_from_zero_whatever_the_history(
    o: Observation, s: State, cfg: PolicyConfig
) -> None:
    quiet = {"visible": 0, "in_flight": 0, "delayed": 0, "current": 0, "ready": 0}
    idle = Observation(**{**o.__dict__, **quiet})
    assert decide(idle, s, cfg).desired == cfg.min_replicas


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
