"""An in-memory stand-in for SQS (a `worker.seams.QueueSeam`): for driving the real pipeline where
no SQS server can run (a GPU machine with no Node and no boto3), and nowhere else. Visibility,
receive counts and batch limits behave as SQS's do; long polls wait on a condition."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.seams import BatchOutcome, OutgoingMessage, ReceivedMessage
from worker.sqs_limits import BATCH_MAX_ENTRIES


@dataclass
class _Stored:
    message_id: str
    body: str
    sent_ms: int
    visible_at: float = 0.0
    receives: int = 0
    handle: str = ""


@dataclass
class MemoryQueue:
    """One input queue (`url`) and whatever results are sent anywhere (kept in `sent`)."""

    url: str = "http://memory.local/000000000000/requests"
    messages: dict[str, _Stored] = field(default_factory=dict)
    sent: list[OutgoingMessage] = field(default_factory=list)
    deleted: int = 0

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self.calls = 0

    def put(self, bodies: Sequence[str]) -> None:
        now_ms = int(time.time() * 1000)
        with self._cond:
            for body in bodies:
                key = f"m{next(self._ids)}"
                self.messages[key] = _Stored(key, body, now_ms)
            self._cond.notify_all()

    def receive(
        self, queue_url: str, *, max_messages: int, wait_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]:
        deadline = time.monotonic() + wait_s
        with self._cond:
            self.calls += 1
            while True:
                now = time.monotonic()
                ready = [m for m in self.messages.values() if m.visible_at <= now][:max_messages]
                if ready or now >= deadline:
                    break
                self._cond.wait(deadline - now)
            out = []
            for m in ready:
                m.visible_at = now + visibility_timeout_s
                m.receives += 1
                m.handle = f"{m.message_id}.{m.receives}"
                received = (m.message_id, m.handle, m.body, m.receives, m.sent_ms)
                out.append(ReceivedMessage(queue_url, *received))
            return out

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        assert len(messages) <= BATCH_MAX_ENTRIES
        with self._cond:
            self.calls += 1
            self.sent.extend(messages)
        return BatchOutcome(succeeded=list(range(len(messages))))

    def _by_handle(self, handle: str) -> _Stored | None:
        stored = self.messages.get(handle.split(".", 1)[0])
        return stored if stored is not None and stored.handle == handle else None

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome:
        outcome = BatchOutcome()
        with self._cond:
            self.calls += 1
            for i, handle in enumerate(receipt_handles):
                stored = self._by_handle(handle)
                if stored is None:
                    outcome.failed[i] = "ReceiptHandleIsInvalid"
                    continue
                del self.messages[stored.message_id]
                self.deleted += 1
                outcome.succeeded.append(i)
        return outcome

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        with self._cond:
            self.calls += 1
            for i, (handle, timeout_s) in enumerate(changes):
                stored = self._by_handle(handle)
                if stored is None:
                    outcome.failed[i] = "ReceiptHandleIsInvalid"
                    continue
                stored.visible_at = time.monotonic() + timeout_s
                outcome.succeeded.append(i)
            self._cond.notify_all()
        return outcome

    def max_message_size(self, queue_url: str) -> int:
        return 1_048_576

    def queue_attributes(self, queue_url: str, names: Sequence[str]) -> dict[str, Any]:
        return {}
