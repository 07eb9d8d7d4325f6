"""Batch forming: grouping by task, length sorting, size/token budgets, max wait. The clock is
passed in by hand, so no test sleeps."""

from __future__ import annotations

import bisect
import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Generic, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batching import Batcher, BatchLimits, padded_cost


def make(
    size: int = 4, tokens: int = 10_000, wait: float = 0.02, reorder: float = 0.0
) -> Batcher[str]:
    return Batcher(
        BatchLimits(
            max_batch_size=size, max_batch_tokens=tokens, max_wait_s=wait, max_reorder_s=reorder
        )
    )


def test_nothing_pending_nothing_due() -> None:
    batcher = make()
    assert batcher.next_due(0.0) is None
    assert batcher.take(0.0) is None


def test_closes_at_size_budget_immediately() -> None:
    batcher = make(size=3)
    for i in range(3):
        batcher.add(f"r{i}", group="embed", rows=1, length=10, now=0.0)
    assert batcher.next_due(0.0) == 0.0
    assert sorted(batcher.take(0.0) or []) == ["r0", "r1", "r2"]
    assert len(batcher) == 0


def test_waits_for_max_wait_when_not_full() -> None:
    batcher = make(size=8, wait=0.05)
    batcher.add("a", group="embed", rows=1, length=5, now=1.0)
    batcher.add("b", group="embed", rows=1, length=5, now=1.02)
    assert batcher.take(1.03) is None
    assert abs((batcher.next_due(1.03) or 0) - 0.02) < 1e-9
    assert sorted(batcher.take(1.05) or []) == ["a", "b"]


def test_force_takes_partial_batch() -> None:
    batcher = make(size=8, wait=10)
    batcher.add("a", group="embed", rows=1, length=5, now=0.0)
    assert batcher.take(0.0) is None
    assert batcher.take(0.0, force=True) == ["a"]


def test_token_budget_counts_padded_cost() -> None:
    # budget 100 padded tokens: 4 rows of 25 fit, a fifth does not
    batcher = make(size=32, tokens=100, wait=0)
    for i in range(6):
        batcher.add(f"r{i}", group="embed", rows=1, length=25, now=0.0)
    first = batcher.take(0.0)
    assert first is not None and len(first) == 4
    assert len(batcher.take(0.0) or []) == 2


def test_multi_input_request_counts_its_rows() -> None:
    batcher = make(size=32, tokens=100, wait=0)
    batcher.add("three-rows", group="embed", rows=3, length=20, now=0.0)
    batcher.add("two-rows", group="embed", rows=2, length=20, now=0.0)
    # 5 rows x 20 = 100 fits; adding one more row would not
    batcher.add("one-more", group="embed", rows=1, length=20, now=0.0)
    batch = batcher.take(0.0) or []
    assert sum({"three-rows": 3, "two-rows": 2, "one-more": 1}[b] for b in batch) <= 5


def test_oversized_request_still_runs_alone() -> None:
    batcher = make(size=32, tokens=100, wait=0)
    batcher.add("huge", group="embed", rows=1, length=500, now=0.0)
    batcher.add("small", group="embed", rows=1, length=5, now=0.1)
    assert batcher.take(0.1) == ["huge"]
    assert batcher.take(0.1) == ["small"]


def test_groups_never_mix() -> None:
    batcher = make(size=4, wait=0)
    batcher.add("e1", group="embed", rows=1, length=5, now=0.0)
    batcher.add("c1", group="classify", rows=1, length=5, now=0.0)
    batcher.add("e2", group="embed", rows=1, length=5, now=0.0)
    batches = [batcher.take(1.0), batcher.take(1.0)]
    assert sorted(sorted(b or []) for b in batches) == [["c1"], ["e1", "e2"]]


def test_length_sorting_cuts_padding() -> None:
    """Shuffled lengths 1..128: sorted batches of 8 carry far less padding than arrival order."""
    rng = random.Random(7)
    lengths = list(range(1, 129))
    rng.shuffle(lengths)
    batcher: Batcher[int] = make(size=8, tokens=1_000_000, wait=0)
    for length in lengths:
        batcher.add(length, group="embed", rows=1, length=length, now=0.0)
    sorted_padded = 0
    while (batch := batcher.take(1.0)) is not None:
        assert len(batch) <= 8
        sorted_padded += len(batch) * max(batch)
    arrival_padded = sum(8 * max(lengths[i : i + 8]) for i in range(0, 128, 8))
    real = sum(lengths)
    assert sorted_padded / real < 1.15
    assert arrival_padded / real > 1.5


def test_oldest_request_is_never_starved() -> None:
    """A long request keeps arriving behind a stream of short ones: it still goes in the next
    due batch, because a batch is built around the oldest request."""
    batcher: Batcher[str] = make(size=4, tokens=1_000_000, wait=0.01)
    batcher.add("long-old", group="embed", rows=1, length=200, now=0.0)
    for i in range(40):
        batcher.add(f"short{i}", group="embed", rows=1, length=3, now=0.005)
    first = batcher.take(0.02) or []
    assert "long-old" in first


def test_a_held_backlog_goes_shortest_first_not_around_a_long_oldest_request() -> None:
    """The oldest request is the longest, and everything arrived within the reorder window:
    built around the oldest (as before), the first batch padded three short requests to its
    length; now the short ones go together, and the long one after them."""
    batcher = make(size=4, tokens=1_000_000, wait=0.0, reorder=1.0)
    batcher.add("long", group="embed", rows=1, length=50, now=0.0)
    for i in range(8):
        batcher.add(f"short{i}", group="embed", rows=1, length=5, now=0.001)
    batches = [batcher.take(0.01) for _ in range(3)]
    assert [len(b or []) for b in batches] == [4, 4, 1]
    assert batches[2] == ["long"]


def test_within_the_reorder_window_the_batch_is_the_full_run_with_the_least_padding() -> None:
    """A pool still filling: the shortest requests are few and far apart in length. Started at
    the shortest (the rule after the window), the batch pads 1..8 to 8 (1.78 padded per real
    token); within the window it is the dense run of one length, and the sparse ones wait for
    more of their kind."""
    batcher = make(size=8, tokens=1_000_000, wait=0.0, reorder=1.0)
    for length in range(1, 9):
        batcher.add(f"sparse{length}", group="embed", rows=1, length=length, now=0.0)
    for i in range(8):
        batcher.add(f"dense{i}", group="embed", rows=1, length=20, now=0.0)
    assert batcher.take(0.5) == [f"dense{i}" for i in range(8)]
    for i in range(8):
        batcher.add(f"dense{i + 8}", group="embed", rows=1, length=20, now=0.6)
    # the window has passed for the oldest: shortest first, whatever it pads
    assert batcher.take(1.0) == [f"sparse{length}" for length in range(1, 9)]


def test_a_full_group_always_gives_a_full_batch() -> None:
    """The least-padding choice never takes a short run (one of one length pads nothing) while
    a full batch is held."""
    rng = random.Random(3)
    batcher = make(size=8, tokens=1_000_000, wait=0.0, reorder=10.0)
    for i in range(200):
        batcher.add(f"r{i}", group="embed", rows=1, length=rng.randint(1, 60), now=0.0)
    while len(batcher) >= 8:
        assert len(batcher.take(1.0) or []) == 8


def test_shorter_requests_pass_an_old_one_only_within_the_reorder_window() -> None:
    """A long request, then a stream of short ones: those that arrived within `max_reorder_s`
    of it may go first, those after may not, so it waits a bounded while, never forever."""
    batcher = make(size=2, tokens=1_000_000, wait=0.0, reorder=0.5)
    batcher.add("long", group="embed", rows=1, length=40, now=0.0)
    for i in range(4):
        batcher.add(f"early{i}", group="embed", rows=1, length=3, now=0.1)
    for i in range(20):
        batcher.add(f"late{i}", group="embed", rows=1, length=3, now=1.0 + i / 100)
    taken: list[str] = []
    while "long" not in taken:
        taken += batcher.take(2.0) or []
    assert sorted(taken[:4]) == [f"early{i}" for i in range(4)]  # they may pass it
    assert len(taken) <= 6  # the late ones may not: the long one goes with one of them at most


def test_drain_returns_everything() -> None:
    batcher = make(size=100, wait=100)
    for i in range(5):
        batcher.add(i, group=i % 2, rows=1, length=i + 1, now=0.0)
    assert sorted(batcher.drain()) == [0, 1, 2, 3, 4]
    assert len(batcher) == 0


# ---------------------------------------------------------------- the fast Batcher vs a reference




T = TypeVar("T")


@dataclass
class RefPending(Generic[T]):
    payload: T
    group: Hashable
    rows: int
    length: int
    arrived: float
    seq: int = field(default=0)


class ReferenceBatcher(Generic[T]):
    """A plain Batcher (O(n) per operation, each rule written out as stated), kept as the
    oracle the fast one must agree with."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        # per group: pending sorted by (length, seq)
        self._groups: dict[Hashable, list[RefPending[T]]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return sum(len(items) for items in self._groups.values())

    def add(self, payload: T, *, group: Hashable, rows: int, length: int, now: float) -> None:
        self._seq += 1
        item = RefPending(payload, group, max(1, rows), max(1, length), now, self._seq)
        bisect.insort(self._groups.setdefault(group, []), item, key=lambda p: (p.length, p.seq))

    def _full(self, items: list[RefPending[T]]) -> bool:
        """Whether the group already holds at least one full batch."""
        rows = sum(p.rows for p in items)
        if len(items) >= self.limits.max_batch_size:
            return True
        longest = items[-1].length  # sorted by length
        return padded_cost(rows, longest) >= self.limits.max_batch_tokens

    def next_due(self, now: float) -> float | None:
        """Seconds until some batch is due (0 = now), or None when nothing is pending."""
        best: float | None = None
        for items in self._groups.values():
            if not items:
                continue
            if self._full(items):
                return 0.0
            oldest = min(p.arrived for p in items)
            wait = max(0.0, oldest + self.limits.max_wait_s - now)
            best = wait if best is None else min(best, wait)
        return best

    def take(self, now: float, *, force: bool = False) -> list[T] | None:
        """The next batch if one is due (or any pending work when `force`), else None.

        The batch is a run of length-sorted requests: while the oldest has waited less than the
        reorder window, the tightest run (`_tightest`); after, the run from the shortest request
        that arrived within the window of the oldest (`_window`)."""
        chosen_group: Hashable | None = None
        chosen_age = -1.0
        for group, items in self._groups.items():
            if not items:
                continue
            oldest = min(p.arrived for p in items)
            due = force or self._full(items) or now - oldest >= self.limits.max_wait_s
            if due and now - oldest > chosen_age:
                chosen_group, chosen_age = group, now - oldest
        if chosen_group is None:
            return None
        items = self._groups[chosen_group]
        cutoff = min(p.arrived for p in items) + self.limits.max_reorder_s
        choice = len(items) >= 2 * self.limits.max_batch_size  # else the rest would be strays
        lo, hi = self._tightest(items) if now < cutoff and choice else self._window(items, cutoff)
        batch = items[lo:hi]
        del items[lo:hi]
        if not items:
            del self._groups[chosen_group]
        return [p.payload for p in batch]

    def _fits(self, batch: list[RefPending[T]]) -> bool:
        if len(batch) > self.limits.max_batch_size:
            return False
        return padded_cost(sum(p.rows for p in batch), max(p.length for p in batch)) <= (
            self.limits.max_batch_tokens
        )

    def _tightest(self, items: list[RefPending[T]]) -> tuple[int, int]:
        """Of the full runs, the one with the least padding (padded / real tokens), the one of
        the shortest requests on a tie. The runs: for each length pending, the one that ends at
        its last request and goes down to shorter ones while the batch fits, if it is full (as
        many as the size budget, or a shorter one below would not fit); and the one from the
        shortest request up while it fits."""

        def padding(lo: int, hi: int) -> Fraction:
            run = items[lo:hi]
            padded = padded_cost(sum(p.rows for p in run), max(p.length for p in run))
            return Fraction(padded, sum(p.rows * p.length for p in run))

        lo, hi = self._window(items, float("inf"))
        runs = [(padding(lo, hi), lo, hi)]
        for length in sorted({p.length for p in items}):
            hi = max(i for i, p in enumerate(items) if p.length == length) + 1
            lo = hi - 1
            while lo > 0 and self._fits(items[lo - 1 : hi]):
                lo -= 1
            if hi - lo == self.limits.max_batch_size or lo > 0:
                runs.append((padding(lo, hi), lo, hi))
        _, lo, hi = min(runs)
        return lo, hi

    def _window(self, items: list[RefPending[T]], cutoff: float) -> tuple[int, int]:
        """The shortest request that arrived by `cutoff`, the longer ones after it while the
        batch fits, then the shorter ones before it while it still fits."""
        lo = min(i for i, p in enumerate(items) if p.arrived <= cutoff)
        hi = lo + 1
        while hi < len(items) and self._fits(items[lo : hi + 1]):
            hi += 1
        while lo > 0 and self._fits(items[lo - 1 : hi]):
            lo -= 1
        return lo, hi

    def drain(self) -> list[T]:
        """Everything pending, in no particular order (used when shutting down)."""
        out = [p.payload for items in self._groups.values() for p in items]
        self._groups.clear()
        return out


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.sampled_from(["embed", "classify"]), st.integers(1, 4),
            st.integers(1, 60),
        ),
        st.tuples(st.just("tick"), st.floats(0.0, 0.05)),
        st.tuples(st.just("take"), st.booleans()),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=operations,
    size=st.integers(1, 8),
    tokens=st.integers(1, 400),
    reorder=st.sampled_from([0.0, 0.03, 1.0]),
)
def test_the_fast_batcher_forms_the_batches_the_reference_does(
    ops: list[tuple], size: int, tokens: int, reorder: float  # type: ignore[type-arg]
) -> None:
    limits = BatchLimits(
        max_batch_size=size, max_batch_tokens=tokens, max_wait_s=0.02, max_reorder_s=reorder
    )
    fast: Batcher[int] = Batcher(limits)
    reference: ReferenceBatcher[int] = ReferenceBatcher(limits)
    now, n = 0.0, 0
    for op in ops:
        if op[0] == "add":
            n += 1
            for b in (fast, reference):
                b.add(n, group=op[1], rows=op[2], length=op[3], now=now)
        elif op[0] == "tick":
            now += op[1]
        else:
            assert fast.next_due(now) == reference.next_due(now)
            assert fast.take(now, force=op[1]) == reference.take(now, force=op[1])
        assert len(fast) == len(reference)
    assert sorted(fast.drain()) == sorted(reference.drain())
