"""Batch forming. Pure: the caller passes the clock in, so tests drive time by hand.

Requests are grouped by task and sorted by token length, so a batch holds requests of similar
length and carries little padding (measured here: unsorted batches carry 4x the padding and run
5x slower). A batch closes when it reaches the size budget or the token budget, or when its
oldest request has waited `max_wait_s`, whichever comes first. Which requests it takes: see
`Batcher.take` (the run with the least padding, or shortest first once the oldest request has
waited a reorder window).

The token budget counts what the device computes: a padded batch costs
`items x longest sequence`, so that is what `max_batch_tokens` bounds. A single request larger than
the budget still runs, alone.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 32
    max_batch_tokens: int = 8192
    max_wait_s: float = 0.02
    # how long after the oldest request the shorter ones that may go before it arrived (0: only
    # those that arrived with it, in the same receive)
    max_reorder_s: float = 0.0


@dataclass
class Pending(Generic[T]):
    """One request waiting for a batch."""

    payload: T
    group: Hashable  # requests of different groups (tasks) never share a batch
    rows: int  # sequences this request adds to the batch (one per input text)
    length: int  # its longest sequence in tokens
    arrived: float  # clock value when it was added
    seq: int = field(default=0)
    taken: bool = False


def padded_cost(rows: int, longest: int) -> int:
    return rows * longest


@dataclass
class _Group(Generic[T]):
    """One group's pending requests: sorted by (length, seq) for batch forming, in arrival
    order for finding the oldest (lazily: taken ones are skipped), and their rows in total."""

    by_length: list[Pending[T]] = field(default_factory=list)
    by_arrival: deque[Pending[T]] = field(default_factory=deque)
    rows: int = 0

    def oldest(self) -> Pending[T]:
        while self.by_arrival[0].taken:
            self.by_arrival.popleft()
        return self.by_arrival[0]


def _order(p: Pending[T]) -> tuple[int, int]:
    return (p.length, p.seq)


def _padding(run: list[Pending[T]]) -> float:
    """Padded / real tokens of a length-sorted run (its requests padded to its longest)."""
    rows = sum(p.rows for p in run)
    return padded_cost(rows, run[-1].length) / sum(p.rows * p.length for p in run)


class Batcher(Generic[T]):
    """Holds pending requests and hands out batches. Not thread-safe: guard it with a lock.

    Every operation is O(log n) in the pending requests but for the removal of a batch from a
    list (a memmove), the search for the shortest request in the reorder window (a scan past the
    shorter, younger ones) and the run's extent, O(max_batch_size): a worker may hold thousands."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self._groups: dict[Hashable, _Group[T]] = {}
        self._seq = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, payload: T, *, group: Hashable, rows: int, length: int, now: float) -> None:
        self._seq += 1
        item = Pending(payload, group, max(1, rows), max(1, length), now, self._seq)
        pending = self._groups.setdefault(group, _Group())
        bisect.insort(pending.by_length, item, key=_order)
        pending.by_arrival.append(item)
        pending.rows += item.rows
        self._count += 1

    def _full(self, pending: _Group[T]) -> bool:
        """Whether the group already holds at least one full batch."""
        if len(pending.by_length) >= self.limits.max_batch_size:
            return True
        longest = pending.by_length[-1].length  # sorted by length
        return padded_cost(pending.rows, longest) >= self.limits.max_batch_tokens

    def next_due(self, now: float) -> float | None:
        """Seconds until some batch is due (0 = now), or None when nothing is pending."""
        best: float | None = None
        for pending in self._groups.values():
            if self._full(pending):
                return 0.0
            wait = max(0.0, pending.oldest().arrived + self.limits.max_wait_s - now)
            best = wait if best is None else min(best, wait)
        return best

    def take(self, now: float, *, force: bool = False) -> list[T] | None:
        """The next batch if one is due (or any pending work when `force`), else None.

        The batch is a run of length-sorted requests. While the group's oldest request has
        waited less than `max_reorder_s`, it is the run with the least padding (`_tightest`):
        a pool still filling (slow receives, a ramp) holds dense runs of one length, where the
        shortest requests are few and far apart in length. Once the oldest has waited that long,
        the run starts at the shortest request that arrived within `max_reorder_s` of it: from
        it up to longer ones while the budgets allow, then down to shorter ones while they still
        fit. A held backlog so goes in runs of similar length, as a sort of the whole set would
        (building every batch around the oldest request padded short ones to an outlier's
        length); and no request waits behind an endless stream of shorter ones, only behind
        those that arrived within the window after it."""
        chosen: Hashable | None = None
        chosen_age = -1.0
        for key, pending in self._groups.items():
            age = now - pending.oldest().arrived
            due = force or self._full(pending) or age >= self.limits.max_wait_s
            if due and age > chosen_age:
                chosen, chosen_age = key, age
        if chosen is None:
            return None
        pending = self._groups[chosen]
        items = pending.by_length
        cutoff = pending.oldest().arrived + self.limits.max_reorder_s
        choice = now < cutoff and len(items) >= 2 * self.limits.max_batch_size
        lo, hi = self._tightest(items) if choice else self._window(items, cutoff)
        batch = items[lo:hi]
        del items[lo:hi]
        for p in batch:
            p.taken = True
            pending.rows -= p.rows
        self._count -= len(batch)
        if not items:
            del self._groups[chosen]
        return [p.payload for p in batch]

    def _window(self, items: list[Pending[T]], cutoff: float) -> tuple[int, int]:
        """[lo, hi) in the sorted list: from the shortest request that arrived by `cutoff` up as
        far as the budgets allow, then down to shorter ones while they still fit."""
        lo = next(i for i, p in enumerate(items) if p.arrived <= cutoff)
        size, budget = self.limits.max_batch_size, self.limits.max_batch_tokens
        rows, hi = items[lo].rows, lo + 1
        while hi < len(items) and hi - lo < size:
            if padded_cost(rows + items[hi].rows, items[hi].length) > budget:
                break
            rows += items[hi].rows
            hi += 1
        longest = items[hi - 1].length
        while lo > 0 and hi - lo < size:
            if padded_cost(rows + items[lo - 1].rows, longest) > budget:
                break
            lo -= 1
            rows += items[lo].rows
        return lo, hi

    def _tightest(self, items: list[Pending[T]]) -> tuple[int, int]:
        """[lo, hi) in the sorted list: the full run with the least padding (padded / real
        tokens; the shortest on a tie). The runs: each that ends at the last request of some
        length and goes down to shorter ones until the budgets stop it (one that runs out of
        shorter requests first is no full batch), and the one from the shortest request up.
        O(distinct lengths x max_batch_size)."""
        size, budget = self.limits.max_batch_size, self.limits.max_batch_tokens
        lo, hi = self._window(items, math.inf)  # from the shortest up
        best, best_lo, best_hi = _padding(items[lo:hi]), lo, hi
        end = len(items)
        while end > 0:
            longest = items[end - 1].length
            start, rows = end - 1, items[end - 1].rows
            real = rows * longest
            while start > 0 and end - start < size:
                below = items[start - 1]
                if padded_cost(rows + below.rows, longest) > budget:
                    break
                start -= 1
                rows += below.rows
                real += below.rows * below.length
            if start > 0 or end - start == size:  # a full batch
                padding = padded_cost(rows, longest) / real
                if padding < best or (padding == best and start < best_lo):
                    best, best_lo, best_hi = padding, start, end
            end = bisect.bisect_left(items, (longest, 0), key=_order)
        return best_lo, best_hi

    def drain(self) -> list[T]:
        """Everything pending, in no particular order (used when shutting down)."""
        out = [p.payload for pending in self._groups.values() for p in pending.by_length]
        self._groups.clear()
        self._count = 0
        return out
