"""Two references that bound what any policy can do on a trace. Pure. Neither is a product.

* `oracle` (clairvoyant): knows every arrival. It asks, one start-up ahead, for the replicas that
  serve each second's arrivals within that second (the peak second of the coming start-up
  window), and starts the trace with them running. Its p95 is a lower bound for every policy on
  the same trace and model (if anything beats it, the model or it is broken); its GPU-hours are
  what such a p95 costs, not a lower bound on GPU-hours.
* `reactive-ideal`: the best purely reactive policy. It sees the true queue with no lag, decides
  every 5 s with no rate limits and keeps nothing warm: replicas for the arrival rate of the last
  60 s (SQS's NumberOfMessagesSent, unlagged) plus the backlog drained in 30 s; none once nothing
  arrived for 60 s and nothing waits.
"""

from __future__ import annotations

import math
from collections import deque

from scaler.policy import Observation, PolicyConfig
from scaler.simpolicy import BasePolicy


def forward_max(values: list[int], span: int) -> list[int]:
    """out[t] = max(values[t : t + span + 1]) (a monotonic deque, O(n))."""
    out = [0] * len(values)
    window: deque[int] = deque()
    for t in range(len(values) - 1, -1, -1):
        while window and values[window[-1]] <= values[t]:
            window.pop()
        window.append(t)
        while window[0] > t + span:
            window.popleft()
        out[t] = values[window[0]]
    return out


class OraclePolicy(BasePolicy):
    sees_live_counts = True

    def __init__(
        self, cfg: PolicyConfig, arrivals: list[int], service_rate: float, lead_s: float
    ) -> None:
        self.cfg, self.name, self.interval_s = cfg, "oracle", 5.0
        self.rate = service_rate
        need = [min(cfg.max_replicas, math.ceil(a / service_rate - 1e-9)) for a in arrivals]
        self.ahead = forward_max(need, math.ceil(lead_s + self.interval_s) + 1)

    def initial_state(self) -> None:
        return None

    def start_replicas(self, requested: int | None) -> int:
        start = self.ahead[0] if self.ahead else 0
        return max(start, self.cfg.min_replicas, requested or 0)

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        t = int(obs.now)
        planned = self.ahead[t] if t < len(self.ahead) else 0
        backlog = obs.visible + obs.in_flight
        drain = math.ceil(backlog / (self.rate * self.interval_s) - 1e-9)
        desired = max(self.cfg.min_replicas, min(self.cfg.max_replicas, max(planned, drain)))
        if backlog > 0:
            # never shed a replica while work waits: with arrivals above the most replicas
            # can serve, the plan fell while the backlog lasted, and a policy that only ever
            # held the maximum beat the bound
            desired = max(desired, min(obs.current, self.cfg.max_replicas))
        return desired, f"oracle: {planned} planned, {drain} for the backlog", None


class ReactiveIdealPolicy(BasePolicy):
    sees_live_counts = True

    def __init__(
        self,
        cfg: PolicyConfig,
        arrivals: list[int],
        service_rate: float,
        window_s: int = 60,
        drain_s: float = 30.0,
    ) -> None:
        self.cfg, self.name, self.interval_s = cfg, "reactive-ideal", 5.0
        self.rate, self.window_s, self.drain_s = service_rate, window_s, drain_s
        self.cum = [0]
        for a in arrivals:
            self.cum.append(self.cum[-1] + a)

    def initial_state(self) -> None:
        return None

    def decide(self, obs: Observation, state: None) -> tuple[int, str, None]:
        t = min(int(obs.now) + 1, len(self.cum) - 1)
        start = max(0, t - self.window_s)
        lam = (self.cum[t] - self.cum[start]) / max(1, t - start)
        backlog = obs.visible + obs.in_flight
        need = math.ceil((lam + backlog / self.drain_s) / self.rate - 1e-9)
        if backlog > 0:
            need = max(need, 1)
        desired = max(self.cfg.min_replicas, min(self.cfg.max_replicas, need))
        return desired, f"reactive-ideal: {lam:.2f}/s, backlog {backlog}", None
