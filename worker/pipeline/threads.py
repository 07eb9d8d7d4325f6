"""A stage's threads when their number grows: the receivers and the result writers start at the
configured count and add threads, up to a maximum, while slow SQS round trips call for more.
`GrowingThreads` is the one owner of such a list (its own lock: the stage's threads grow it and
may leave it, the composition root reads it to join and to check health)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.logs import event

log = logging.getLogger("worker.pipeline")

Spawn = Callable[[str, Callable[[], None]], threading.Thread]


class GrowingThreads:
    def __init__(
        self, name: str, *, configured: int, most: int | None, added: str
    ) -> None:
        """`name` names the threads (`name-0`, `name-1`, ...) and the count in the log line
        `added` that an added thread writes."""
        self._name = name
        self._configured = configured
        self._most = max(configured, most or configured)
        self._added = added
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = 0  # threads started so far: each one's number
        self._spawn: Spawn | None = None
        self._loop: Callable[[int, bool], Callable[[], None]] | None = None
        self._closed = False

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def count(self) -> int:
        with self._lock:
            return len(self._threads)

    def full(self) -> bool:
        with self._lock:
            return len(self._threads) >= self._most

    def alive(self) -> bool:
        """Every thread in the list still runs (one that left on purpose is not in it)."""
        with self._lock:
            return all(t.is_alive() for t in self._threads)

    def start(self, spawn: Spawn, loop: Callable[[int, bool], Callable[[], None]]) -> None:
        """Start the configured count; `loop(number, added)` is a thread's body."""
        self._spawn, self._loop = spawn, loop
        for _ in range(self._configured):
            self.add()

    def add(self) -> None:
        """One more thread, unless at the maximum or closed."""
        with self._lock:
            count, number = len(self._threads), self._started
            if self._spawn is None or self._loop is None or self._closed or count >= self._most:
                return
            self._started += 1
            body = self._loop(number, count >= self._configured)
            self._threads.append(self._spawn(f"{self._name}-{number}", body))
        if count >= self._configured:
            event(log, self._added, logging.INFO, **{f"{self._name}s": count + 1})

    def leave(self, thread: threading.Thread) -> int:
        """`thread` ends on purpose: out of the list. Returns how many are left."""
        with self._lock:
            self._threads.remove(thread)
            return len(self._threads)

    def close(self) -> None:
        """No thread is added after this returns, so `threads` is then the list to join."""
        with self._lock:
            self._closed = True
