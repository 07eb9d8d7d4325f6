"""Batch forming: grouping by task, length sorting, size/token budgets, max wait. The clock is
passed in by hand, so no test sleeps."""

from __future__ import annotations

import bisect
import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batching import Batcher, BatchLimits, padded_cost


def make(size: int = 4, tokens: int = 10_000, wait: float = 0.02) -> Batcher[str]:
    return Batcher(BatchLimits(max_batch_size=size, max_batch_tokens=tokens, max_wait_s=wait))


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


def test_drain_returns_everything() -> None:
    batcher = make(size=100, wait=100)
    for i in range(5):
        batcher.add(i, group=i % 2, rows=1, length=i + 1, now=0.0)
    assert sorted(batcher.drain()) == [0, 1, 2, 3, 4]
    assert len(batcher) == 0


# ---------------------------------------------------------------- the fast Batcher vs the first one




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
    """The first Batcher (O(n) per operation), kept as the oracle the fast one must agree with."""

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

        The batch is a run of length-sorted requests that contains the group's oldest request (so
        no request waits behind an endless stream of shorter ones): of the runs that contain it,
        the largest within the budgets, and among those the one with the least padding."""
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
        start = min(range(len(items)), key=lambda i: (items[i].arrived, items[i].seq))
        lo, hi = self._best_window(items, start)
        batch = items[lo:hi]
        del items[lo:hi]
        if not items:
            del self._groups[chosen_group]
        return [p.payload for p in batch]

    def _best_window(self, items: list[RefPending[T]], start: int) -> tuple[int, int]:
        """[lo, hi) around `start` in the sorted list: most requests, then least padding."""
        best: tuple[int, int, int, int] | None = None  # (-size, waste, lo, hi)
        first = max(0, start - self.limits.max_batch_size + 1)
        for lo in range(first, start + 1):
            rows = real = 0
            hi = lo
            while hi < len(items) and hi - lo < self.limits.max_batch_size:
                candidate = items[hi]
                cost = padded_cost(rows + candidate.rows, candidate.length)
                if hi > lo and cost > self.limits.max_batch_tokens:
                    break
                rows += candidate.rows
                real += candidate.rows * candidate.length
                hi += 1
            if hi <= start:
                continue  # the budget closed the run before it reached the oldest request
            waste = padded_cost(rows, items[hi - 1].length) - real
            key = (-(hi - lo), waste, lo, hi)
            if best is None or key < best:
                best = key
        if best is None:  # the oldest request alone is over the budget
            return start, start + 1
        return best[2], best[3]

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
@given(ops=operations, size=st.integers(1, 8), tokens=st.integers(1, 400))
def test_the_fast_batcher_forms_the_batches_the_first_one_did(
    ops: list[tuple], size: int, tokens: int  # type: ignore[type-arg]
) -> None:
    limits = BatchLimits(max_batch_size=size, max_batch_tokens=tokens, max_wait_s=0.02)
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
