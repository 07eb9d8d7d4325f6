"""Temporary reply queues: created on a client's first wait without a result queue of its own,
named `gpuqueue-reply-<uuid>` (so a worker's WORKER_REPLY_TO_ALLOW can name the prefix), tagged
with an expiry, deleted on close. A crashed client leaves its queue behind: `sweep` deletes those
whose expiry passed (ListQueues with the prefix, ListQueueTags on each).

The expiry is pushed forward while the client uses the queue (when less than half of
`ttl_s` is left), so a long-running process never has its queue swept under it. A process idle
past the expiry (a weekend, with a 24 h ttl) may have had it swept: it makes a new queue on its
next wait, as it does when a call finds the queue gone.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.errors import error_code

QUEUE_GONE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})

PREFIX = "gpuqueue-reply-"
EXPIRES_TAG = "gpuqueue:expires-at"  # epoch seconds, as a decimal string
TTL_S = 24 * 3600
MAX_RETENTION_S = 1_209_600  # SQS's longest MessageRetentionPeriod (14 days)


class ReplyQueue:
    def __init__(
        self,
        sqs: Any,
        *,
        prefix: str = PREFIX,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.time,
        on_replaced: Callable[[str], None] = lambda url: None,
    ) -> None:
        self._sqs = sqs
        self._on_replaced = on_replaced  # told the old URL when a new queue takes its place
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._clock = clock
        self.url: str | None = None
        self.expires_at = 0.0
        # waiting calls of several threads ensure() at once: one queue, made once
        self._lock = threading.Lock()

    def ensure(self) -> str:
        """The queue's URL, created on first call; its expiry renewed when half gone."""
        with self._lock:
            return self._ensure()

    def _ensure(self) -> str:
        now = self._clock()
        if self.url is not None and self.expires_at <= now:
            self._replace(sweep_old=True)  # past its expiry: swept, or about to be
        if self.url is not None and self.expires_at - now < self._ttl_s / 2:
            expires_at = now + self._ttl_s
            try:
                self._sqs.tag_queue(QueueUrl=self.url, Tags={EXPIRES_TAG: str(int(expires_at))})
                self.expires_at = expires_at
            except Exception as exc:
                if error_code(exc) not in QUEUE_GONE_CODES:
                    raise
                self._replace(sweep_old=False)
        if self.url is None:
            self.expires_at = now + self._ttl_s
            retention = int(min(MAX_RETENTION_S, max(60, self._ttl_s)))
            self.url = str(
                self._sqs.create_queue(
                    QueueName=f"{self._prefix}{uuid.uuid4().hex}",
                    Attributes={"MessageRetentionPeriod": str(retention)},
                    tags={EXPIRES_TAG: str(int(self.expires_at))},
                )["QueueUrl"]
            )
        return self.url

    def lost(self, url: str, exc: BaseException) -> bool:
        """A call on `url` failed with `exc`: whether that says the queue is gone (then the
        next wait makes a new one)."""
        if error_code(exc) not in QUEUE_GONE_CODES:
            return False
        with self._lock:
            if self.url == url:
                self._replace(sweep_old=False)
        return True

    def _replace(self, *, sweep_old: bool) -> None:
        """Drop the current queue (deleting it first when it may still exist: its expiry
        passed, so no one else reads it); the next `_ensure` makes a new one."""
        old, self.url = self.url, None
        assert old is not None
        if sweep_old:
            with contextlib.suppress(Exception):  # swept already, most likely
                self._sqs.delete_queue(QueueUrl=old)
        self._on_replaced(old)

    def delete(self) -> None:
        with self._lock:
            if self.url is not None:
                self._sqs.delete_queue(QueueUrl=self.url)
                self.url = None


@dataclass(frozen=True)
class Swept:
    queue_url: str
    expires_at: float | None  # None: no expiry tag (not made by this client: kept)
    deleted: bool


def sweep(
    sqs: Any, *, prefix: str = PREFIX, now: float | None = None, dry_run: bool = False
) -> list[Swept]:
    """Delete the queues named `prefix...` whose expiry tag has passed; report every one seen."""
    now = time.time() if now is None else now
    out: list[Swept] = []
    for page in sqs.get_paginator("list_queues").paginate(
        QueueNamePrefix=prefix, PaginationConfig={"PageSize": 1000}
    ):
        for url in page.get("QueueUrls", ()):
            try:
                out.append(_sweep_one(sqs, url, now, dry_run))
            except Exception as exc:
                # deleted meanwhile (its client closed, another sweep; ListQueues lists a
                # deleted queue for up to 60 s): the rest of the sweep goes on
                if error_code(exc) not in QUEUE_GONE_CODES:
                    raise
    return out


def _sweep_one(sqs: Any, url: str, now: float, dry_run: bool) -> Swept:
    tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    raw = tags.get(EXPIRES_TAG)
    try:
        expires_at: float | None = float(raw) if raw is not None else None
    except ValueError:
        expires_at = None
    due = expires_at is not None and expires_at <= now
    if due and not dry_run:
        sqs.delete_queue(QueueUrl=url)
    return Swept(url, expires_at, due and not dry_run)
