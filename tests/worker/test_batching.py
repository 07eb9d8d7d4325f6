"""Batch forming: grouping by task, length sorting, size/token budgets, max wait. The clock is
passed in by hand, so no test sleeps."""

from __future__ import annotations

import random

from worker.batching import Batcher, BatchLimits


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
