"""The default policy's invariants, by hypothesis, over random observations and random histories:
fresh states, states from any annotation text (malformed ones decode to fresh), and states with
arbitrary values (times from the future, huge rates) that never came through the annotation."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from scaler.policy import Observation, PolicyConfig, State, decide
from scaler.state import decode, encode

NOW = 10_000.0
counts = st.integers(min_value=0, max_value=100_000)
replicas = st.integers(min_value=0, max_value=60)
times = st.floats(min_value=0, max_value=2 * NOW, allow_nan=False)


@st.composite
def configs(draw: st.DrawFn) -> PolicyConfig:
    low = draw(st.integers(min_value=0, max_value=10))
    high = draw(st.integers(min_value=max(low, 1), max_value=60))
    return PolicyConfig(
        min_replicas=low,
        max_replicas=high,
        activation_backlog=draw(st.integers(min_value=0, max_value=20)),
        scale_down_stabilization_s=draw(st.sampled_from([0.0, 60.0, 180.0, 300.0])),
        cooldown_to_zero_s=draw(st.sampled_from([0.0, 300.0, 2700.0])),
        release_after_s=draw(st.sampled_from([0.0, 300.0, 900.0])),
        startup_delay_s=draw(st.sampled_from([0.0, 60.0, 150.0, 300.0])),
        drain_rate_prior=draw(st.floats(min_value=0.05, max_value=100)),
        target_wait_s=draw(st.sampled_from([10.0, 60.0, 300.0])),
        headroom=draw(st.sampled_from([0.0, 0.2])),
        max_step_up=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=10))),
        keep_warm_fraction=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        keep_warm_s=draw(st.sampled_from([0.0, 600.0, 1800.0])),
    )


@st.composite
def raw_states(draw: st.DrawFn) -> State:
    """Any values at all, future times included."""
    pairs = st.lists(st.tuples(times, replicas), max_size=6).map(tuple)
    opt_time = st.one_of(st.none(), times)
    return State(
        recommendations=draw(pairs),
        last_active=draw(opt_time),
        drain_rate=draw(st.one_of(st.none(), st.floats(min_value=1e-300, max_value=1e300))),
        arrival_rate=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1e300))),
        prev_time=draw(opt_time),
        prev_backlog=draw(st.one_of(st.none(), counts)),
        prev_visible=draw(st.one_of(st.none(), counts)),
        prev_ready=draw(st.one_of(st.none(), replicas)),
        last_scale_up=draw(opt_time),
        ready_since=draw(opt_time),
        peaks=draw(pairs),
        history_since=draw(opt_time),
        idle_since=draw(opt_time),
        gaps=draw(st.lists(st.floats(min_value=0, max_value=1e6), max_size=4).map(tuple)),
    )


@st.composite
def annotated_states(draw: st.DrawFn) -> State:
    """What the runner hands the policy: an annotation (valid, mangled or garbage) decoded."""
    text = encode(draw(raw_states())) if draw(st.booleans()) else draw(st.text(max_size=40))
    if draw(st.booleans()) and len(text) > 2:
        cut = draw(st.integers(min_value=1, max_value=len(text) - 1))
        junk = draw(st.sampled_from(["1" + "0" * 400, "-1", "true", "", "]"]))
        text = text[:cut] + junk + text[cut:]
    return decode(text, NOW)[0]


states = st.one_of(st.just(State()), raw_states(), annotated_states())


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    current = draw(replicas)
    return Observation(
        now=NOW,
        visible=draw(counts),
        in_flight=draw(st.integers(min_value=0, max_value=5000)),
        delayed=draw(st.integers(min_value=0, max_value=5000)),
        current=current,
        ready=draw(st.integers(min_value=0, max_value=current)),
        drained_per_s=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1000))),
    )


@settings(max_examples=120, deadline=None)
@given(st.lists(observations(), min_size=1, max_size=8), states, configs(),
       st.lists(st.floats(min_value=1, max_value=900), min_size=8, max_size=8))
def test_always_within_bounds_over_sequences(
    seq: list[Observation], s: State, cfg: PolicyConfig, gaps: list[float]
) -> None:
    now, current = NOW, seq[0].current
    for o, dt in zip(seq, gaps, strict=False):
        now += dt
        d = decide(replace(o, now=now, current=current, ready=min(o.ready, current)), s, cfg)
        assert cfg.min_replicas <= d.desired <= cfg.max_replicas, d.reason
        s, current = d.state, d.desired


@settings(max_examples=100, deadline=None)
@given(states, configs(), replicas, st.sampled_from([None, 0.0]))
# found by a random run: a recommendation stamped 41 s ahead of the clock (trusted: within
# FUTURE_SLACK_S) held one replica past cooldown + stabilization
@example(
    State(recommendations=((NOW + 41.0, 1),)),
    PolicyConfig(max_replicas=1, scale_down_stabilization_s=0.0, cooldown_to_zero_s=0.0,
                 release_after_s=0.0, startup_delay_s=0.0, target_wait_s=10.0, headroom=0.0,
                 keep_warm_fraction=0.0, keep_warm_s=0.0),
    1,
    None,
)
def test_idle_reaches_the_minimum_after_cooldown_and_stabilization_from_any_state(
    s: State, cfg: PolicyConfig, start: int, drained: float | None
) -> None:
    current = start
    horizon = cfg.cooldown_to_zero_s + cfg.scale_down_stabilization_s + 40.0
    t = 0.0
    while t <= horizon:
        o = Observation(now=NOW + t, visible=0, in_flight=0, delayed=0, current=current,
                        ready=current, drained_per_s=drained)
        d = decide(o, s, cfg)
        s, current = d.state, d.desired
        t += 20.0
    assert current == cfg.min_replicas, d.reason


@settings(max_examples=200, deadline=None)
@given(observations(), states, configs())
def test_never_scales_below_what_drains_the_backlog_within_the_window(
    o: Observation, s: State, cfg: PolicyConfig
) -> None:
    d = decide(o, s, cfg)
    if d.desired < o.current <= cfg.max_replicas:
        window = cfg.scale_down_stabilization_s
        assert d.backlog == 0 or d.desired * d.drain_rate * window >= d.backlog, d.reason


@settings(max_examples=150, deadline=None)
@given(observations(), states, configs(), st.integers(min_value=1, max_value=50_000))
def test_monotone_in_backlog(o: Observation, s: State, cfg: PolicyConfig, extra: int) -> None:
    low = decide(o, s, cfg)
    high = decide(replace(o, visible=o.visible + extra), s, cfg)
    assert high.desired >= low.desired


@settings(max_examples=100, deadline=None)
@given(observations(), states, configs())
def test_nothing_waiting_never_wakes_from_zero_whatever_the_history(
    o: Observation, s: State, cfg: PolicyConfig
) -> None:
    quiet = replace(o, visible=0, in_flight=0, delayed=0, current=0, ready=0)
    assert decide(quiet, s, cfg).desired == cfg.min_replicas
