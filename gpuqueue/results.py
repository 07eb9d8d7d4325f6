"""Reading a result queue: `Result` (the worker's own ResultV1 model), S3 claim-check pointers
followed, duplicates dropped by `gpuqueue-message-id`, and an inbox that keeps results for the
waiters of a process.

Duplicates: at-least-once delivery can answer one request twice (the worker was stopped between
sending a result and deleting the request). Both results carry the request's SQS message id, so
the second is dropped, as long as it arrives within `dedup_window` distinct results of the first
(default 100,000: about 10 MB; a duplicate comes at most one visibility timeout plus one batch
after the first, so the window covers ~1,600 results/s for a 60 s timeout).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from worker.contract.result import ResultV1
from worker.contract.wire import ATTR_MESSAGE_ID, ATTR_REQUEST_ID, parse_s3_pointer

log = logging.getLogger("gpuqueue")

DEDUP_WINDOW = 100_000
STASH_LIMIT = 10_000  # results kept for waiters that are not (or no longer) waiting
FOREIGN_RELEASE_S = 2  # a result for no waiter of this process goes back for its owner
DEFAULT_VISIBILITY_S = 30  # SQS's, for a queue whose attributes cannot be read


class Result(ResultV1):
    """One result, as the worker wrote it (the contract's ResultV1)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Polled:
    """What one receive brought: the results to hand over, and how many messages SQS returned
    (duplicates, unreadable and foreign messages among them: a receive of only those is not
    an empty queue)."""

    results: list[Received]
    messages: int
    #: receipt handles of results for someone else, told by their request-id attribute and
    #: left unread (a claim-check's payload not fetched)
    foreign: list[str] = field(default_factory=list)


@dataclass
class Received:
    result: Result
    receipt_handle: str
    s3_object: tuple[str, str] | None  # (bucket, key) of a claim-check payload
    key: str  # what duplicates share: the request's SQS message id


class Bounded:
    """A set that forgets its oldest members beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)


class ResultReader:
    """Receives results from one queue: pointers followed, duplicates deleted and dropped."""

    def __init__(
        self,
        sqs: Any,
        s3: Any,
        queue_url: str,
        *,
        dedup_window: int = DEDUP_WINDOW,
        delete_s3_objects: bool = True,
    ) -> None:
        self.sqs = sqs
        self._s3 = s3
        self.queue_url = queue_url
        self.delete_s3_objects = delete_s3_objects
        self._seen = Bounded(dedup_window)
        self._seen_lock = threading.Lock()
        self._visibility_s: int | None = None
        self.duplicates = 0

    def receive(self, wait_s: int, *, dedup: bool = True) -> list[Received]:
        return self.poll(wait_s, dedup=dedup).results

    def visibility_timeout_s(self) -> int:
        """The queue's VisibilityTimeout (asked once; SQS's default, 30 s, when unreadable)."""
        if self._visibility_s is None:
            self._visibility_s = int_attribute(
                self.sqs, self.queue_url, "VisibilityTimeout", DEFAULT_VISIBILITY_S
            )
        return self._visibility_s

    def poll(
        self, wait_s: int, *, dedup: bool = True, ours: Callable[[str], bool] | None = None
    ) -> Polled:
        """One receive. With `ours`, a result whose request-id attribute it refuses is left
        unread, its handle in `foreign`."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(0, min(20, wait_s)),
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", ())
        out: list[Received] = []
        foreign: list[str] = []
        for message in messages:
            request_id = _attribute(message, ATTR_REQUEST_ID)
            if ours is not None and request_id is not None and not ours(request_id):
                foreign.append(message["ReceiptHandle"])
                continue
            key = _attribute_key(message)
            if key is not None and self.seen(key):
                # known by its attribute: dropped unread (a duplicate claim-check's payload may
                # be gone already, deleted with the first copy)
                self.duplicates += 1
                self._quietly(self._drop_duplicate, message)
                continue
            try:
                received = self._read(message)
            except Exception as exc:  # one unreadable result must not cost its batch-mates
                log.warning(
                    "result %s on %s cannot be read; left for redelivery: %s",
                    message.get("MessageId"), self.queue_url, f"{type(exc).__name__}: {exc}"[:300],
                )
                continue
            if received is None:
                continue
            if dedup and not self.first_time(received.key):
                self.duplicates += 1
                self._quietly(self.done, [received])  # a duplicate: delete it and drop it
                continue
            out.append(received)
        return Polled(out, len(messages), foreign)

    def _quietly(self, delete: Callable[[Any], None], what: Any) -> None:
        """Delete a duplicate; a failure is logged, not raised: the results of this receive
        marked seen already must still be returned (it comes back, and goes then)."""
        try:
            delete(what)
        except Exception as exc:
            log.warning("a duplicate result on %s could not be deleted: %s", self.queue_url,
                        f"{type(exc).__name__}: {exc}"[:300])

    def seen(self, key: str) -> bool:
        with self._seen_lock:
            return key in self._seen

    def first_time(self, key: str) -> bool:
        """Whether `key` is new, remembering it."""
        with self._seen_lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def forget(self, items: Iterable[Received]) -> None:
        """These were not handed over after all (put back): their next delivery is no
        duplicate."""
        with self._seen_lock:
            for item in items:
                self._seen.discard(item.key)

    def _drop_duplicate(self, message: dict[str, Any]) -> None:
        pointer = parse_s3_pointer(message.get("Body", ""))
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if pointer is not None and self.delete_s3_objects and self._s3 is not None:
            self._s3.delete_object(Bucket=pointer[0], Key=pointer[1])

    def _read(self, message: dict[str, Any]) -> Received | None:
        body = message.get("Body", "")
        pointer = parse_s3_pointer(body)
        if pointer is not None:
            if self._s3 is None:
                raise RuntimeError("a result was stored in S3, and this client has no S3 client")
            obj = self._s3.get_object(Bucket=pointer[0], Key=pointer[1])
            body = obj["Body"].read().decode("utf-8")
        try:
            result = _parsed(body)
        except ValidationError as exc:
            # not a result of this contract: left on the queue for whoever put it there
            log.warning("not a gpuqueue result on %s: %s", self.queue_url, str(exc)[:200])
            return None
        key = _attribute_key(message) or result.message_id
        return Received(result, message["ReceiptHandle"], pointer, key)

    def done(self, items: Iterable[Received]) -> None:
        """Delete these messages, then their S3 payloads (in that order: a message never points
        to a payload already gone)."""
        items = list(items)
        for start in range(0, len(items), 10):
            chunk = items[start : start + 10]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r.receipt_handle} for i, r in enumerate(chunk)
                ],
            )
            failed = {int(f["Id"]) for f in response.get("Failed", ())}
            if self.delete_s3_objects and self._s3 is not None:
                for i, r in enumerate(chunk):
                    if r.s3_object is not None and i not in failed:
                        self._s3.delete_object(Bucket=r.s3_object[0], Key=r.s3_object[1])

    def release(self, items: Iterable[Received], after_s: int = 0) -> None:
        """Make these messages visible again (after `after_s`) for another reader."""
        self.release_handles([r.receipt_handle for r in items], after_s)

    def release_handles(self, handles: list[str], after_s: int = 0) -> None:
        for start in range(0, len(handles), 10):
            chunk = handles[start : start + 10]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": after_s}
                    for i, handle in enumerate(chunk)
                ],
            )


class Inbox:
    """The results of one queue for the waiters of this process: one thread polls at a time;
    a result for an id some waiter wants (or that this process sent and nobody waits for any
    more) is kept and deleted from the queue; any other result is put back for its owner."""

    def __init__(self, reader: ResultReader, *, stash_limit: int = STASH_LIMIT) -> None:
        self.reader = reader
        self._cond = threading.Condition()
        self._wanted: dict[str, int] = {}
        self._mine = Bounded(stash_limit * 10)
        self._stash: OrderedDict[str, Result] = OrderedDict()
        self._stash_limit = stash_limit
        self._polling = False

    def expect(self, ids: Iterable[str]) -> None:
        """Ids this process sent: their results are kept even when nobody waits yet."""
        with self._cond:
            for request_id in ids:
                self._mine.add(request_id)

    def wait_for(self, ids: Collection[str], timeout_s: float) -> dict[str, Result]:
        """The results for `ids` that arrive within `timeout_s` (maybe not all)."""
        wanted = set(ids)
        found: dict[str, Result] = {}
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self.expect(wanted)
            for request_id in wanted:
                self._wanted[request_id] = self._wanted.get(request_id, 0) + 1
        try:
            while True:
                with self._cond:
                    for request_id in list(wanted - found.keys()):
                        if request_id in self._stash:
                            found[request_id] = self._stash.pop(request_id)
                    left = deadline - time.monotonic()
                    if len(found) == len(wanted) or left <= 0:
                        return found
                    if self._polling:  # another waiter polls: it notifies when it has read
                        self._cond.wait(min(left, 1.0))
                        continue
                    self._polling = True
                try:
                    self._poll_once(max(1, min(20, int(left))))
                finally:
                    with self._cond:
                        self._polling = False
                        self._cond.notify_all()
        finally:
            with self._cond:
                for request_id in wanted:
                    self._wanted[request_id] -= 1
                    if not self._wanted[request_id]:
                        del self._wanted[request_id]

    def _ours(self, request_id: str) -> bool:
        with self._cond:
            return request_id in self._wanted or request_id in self._mine

    def _poll_once(self, wait_s: int) -> None:
        # told apart by the request-id attribute before reading: a shared queue's claim-checks
        # for other processes were downloaded (and put back, and downloaded again) every 2 s
        polled = self.reader.poll(wait_s, dedup=False, ours=self._ours)
        keep: list[Received] = []
        foreign: list[Received] = []
        for item in polled.results:  # a result without the attribute: told by its body
            rid = item.result.id
            (keep if rid is not None and self._ours(rid) else foreign).append(item)
        keep = [k for k in keep if self._first_time(k)]
        with self._cond:
            for item in keep:
                assert item.result.id is not None
                self._stash[item.result.id] = item.result
                while len(self._stash) > self._stash_limit:
                    self._stash.popitem(last=False)
        if keep:
            self.reader.done(keep)
        handles = polled.foreign + [item.receipt_handle for item in foreign]
        if handles:
            self.reader.release_handles(handles, FOREIGN_RELEASE_S)

    def _first_time(self, item: Received) -> bool:
        if self.reader.first_time(item.key):
            return True
        self.reader.duplicates += 1
        self.reader.done([item])
        return False


def int_attribute(sqs: Any, queue_url: str, name: str, default: int) -> int:
    """A queue's numeric attribute, or `default` when it cannot be read (no
    sqs:GetQueueAttributes, say): what the caller then assumes."""
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[name])
        return int(attributes["Attributes"][name])
    except Exception:
        return default


def _attribute_key(message: dict[str, Any]) -> str | None:
    return _attribute(message, ATTR_MESSAGE_ID)


def _attribute(message: dict[str, Any], name: str) -> str | None:
    attribute = message.get("MessageAttributes", {}).get(name, {})
    value = attribute.get("StringValue")
    return str(value) if value else None


def _parsed(body: str) -> Result:
    """The result in `body`. pydantic's JSON parser refuses a lone surrogate escape (`\\ud800`:
    valid JSON, not valid Unicode) that a worker may echo from a request's id; Python's json
    reads it, and the result is validated from that instead of left unread on the queue."""
    try:
        return Result.model_validate_json(body)
    except ValidationError as exc:
        if not any(error["type"] == "json_invalid" for error in exc.errors()):
            raise
        try:
            data = json.loads(body)
        except ValueError:
            raise exc from None
        return Result.model_validate(data)
