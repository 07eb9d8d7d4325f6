"""The scaling policy's vocabulary: its knobs (`PolicyConfig`), what one run sees
(`Observation`), what it remembers between runs (`State`) and what it decides (`Decision`).
Plain frozen dataclasses, no logic beyond checking the knobs; `scaler.policy` and the estimators
it uses (`scaler.estimate`, `scaler.warm`) all read them from here."""

from __future__ import annotations

from dataclasses import dataclass


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
