"""GPU nodes under the replicas, as GKE's cluster autoscaler runs them. Pure, no I/O, no clock.

One replica per GPU node. The same model serves every policy alike:

* a replica placed on a new node serves `startup_delay` (+ a seeded jitter) after it was asked for
  (node creation, join, driver, image pull, model load);
* a replica removed leaves its node *lingering*: the cluster autoscaler deletes an unneeded node
  only after `linger_s` (GKE: about 10 minutes), and bills it meanwhile; a replica placed on a
  lingering node serves after `pod_start` (image cached: container start and model load);
  a node still booting whose replica was removed boots on and then lingers;
* scale-down removes replicas not serving yet first (the newest first), then serving ones, as a
  ReplicaSet deletes not-ready pods first;
* GPU-hours are node-hours: booting, serving and lingering nodes all bill.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass
class Node:
    up_at: float  # when the node is up (a replica placed on it can start)
    serving_at: float | None  # its replica serves from then; None: no replica (lingering)
    free_since: float = 0.0  # when its replica was removed


class NodePool:
    def __init__(
        self,
        startup_delay: float,
        pod_start: float,
        linger_s: float,
        jitter_s: float = 0.0,
        seed: int = 0,
        initial: int = 0,
    ) -> None:
        if min(startup_delay, pod_start, linger_s, jitter_s) < 0:
            raise ValueError("start-up, pod start, linger and jitter must be >= 0")
        self.startup_delay = startup_delay
        self.pod_start = min(pod_start, startup_delay)
        self.linger_s = linger_s
        self.jitter_s = jitter_s
        self._rng = random.Random(seed)
        self.nodes: list[Node] = [Node(0.0, 0.0) for _ in range(initial)]
        self.replicas = initial
        self.serving = initial
        self._next_event = math.inf

    # ------------------------------------------------------------------ scaling
    def scale_to(self, n: int, now: float) -> None:
        n = max(0, n)
        if n > self.replicas:
            self._add(n - self.replicas, now)
        elif n < self.replicas:
            self._remove(self.replicas - n, now)
        self.replicas = n
        self._refresh(now)

    def _add(self, count: int, now: float) -> None:
        free = sorted((nd for nd in self.nodes if nd.serving_at is None), key=lambda nd: nd.up_at)
        for node in free[:count]:
            node.serving_at = max(node.up_at, now + self.pod_start)
        for _ in range(count - min(count, len(free))):
            jitter = self._rng.uniform(0.0, self.jitter_s) if self.jitter_s else 0.0
            up = now + self.startup_delay + jitter
            self.nodes.append(Node(up_at=up - self.pod_start, serving_at=up))

    def _remove(self, count: int, now: float) -> None:
        placed = [nd for nd in self.nodes if nd.serving_at is not None]
        # not serving yet first, newest first; then the serving ones
        starting = sorted(
            (nd for nd in placed if (nd.serving_at or 0.0) > now),
            key=lambda nd: -(nd.serving_at or 0.0),
        )
        serving = [nd for nd in placed if (nd.serving_at or 0.0) <= now]
        for node in (starting + serving)[:count]:
            node.serving_at = None
            node.free_since = now
        if self.linger_s <= 0:
            self.nodes = [nd for nd in self.nodes if nd.serving_at is not None]

    # ------------------------------------------------------------------ time
    def _expiry(self, node: Node) -> float:
        return max(node.up_at, node.free_since) + self.linger_s

    def _refresh(self, now: float) -> None:
        self.nodes = [
            nd for nd in self.nodes if nd.serving_at is not None or self._expiry(nd) > now
        ]
        self.serving = sum(
            1 for nd in self.nodes if nd.serving_at is not None and nd.serving_at <= now
        )
        events = [
            nd.serving_at if nd.serving_at is not None else self._expiry(nd)
            for nd in self.nodes
        ]
        self._next_event = min((e for e in events if e > now), default=math.inf)

    def advance(self, now: float) -> None:
        """Bring `serving` and the node list up to second `now` (cheap when nothing is due)."""
        if now >= self._next_event:
            self._refresh(now)

    @property
    def next_event(self) -> float:
        return self._next_event

    @property
    def billed(self) -> int:
        return len(self.nodes)
