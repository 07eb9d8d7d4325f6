"""`Client`: put requests on a gpuqueue input queue and get their results back, with boto3.

    with Client(queue_url) as client:            # no result queue: a temporary reply queue
        vectors = client.embed(["a text", "another"], timeout_s=60)

    client = Client(queue_url, result_queue_url)  # fire and forget, read results elsewhere
    ids = client.submit_many({"inputs": t, "ttl_s": 300} for t in texts)
    for result in client.results(max_results=len(ids)):
        ...

Requests are validated against the worker's own contract model (RequestV1) before they are
sent, so a bad field fails here, naming it, and not as an error result later.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import boto3
from pydantic import ValidationError

from gpuqueue.errors import (
    InvalidRequest,
    RequestFailed,
    ResultTimeout,
    SubmitFailed,
    SubmitInterrupted,
)
from gpuqueue.reply_queue import PREFIX, TTL_S, ReplyQueue
from gpuqueue.results import DEDUP_WINDOW, Inbox, Received, Result, ResultReader, int_attribute
from gpuqueue.sending import send_all
from worker.contract.request import MAX_INPUTS_PER_REQUEST, RequestV1
from worker.seams import OutgoingMessage
from worker.sqs_limits import HISTORICAL_MAX_MESSAGE_SIZE

log = logging.getLogger("gpuqueue")

RequestLike = str | Mapping[str, Any] | RequestV1
#: inputs per request when embed/classify/generate split a long list (each request is one item
#: of a worker's batch; smaller ones spread over batches and replicas)
INPUTS_PER_REQUEST = 32

# one per result queue in this process, waiters share it; and per reader options too: an
# inbox's reader deletes (or keeps) S3 payloads and drops duplicates for every waiter on it
_INBOXES: dict[tuple[str, bool, int], Inbox] = {}
_INBOXES_LOCK = threading.Lock()


class Client:
    def __init__(
        self,
        queue_url: str,
        result_queue_url: str | None = None,
        *,
        session: boto3.Session | None = None,
        endpoint_url: str | None = None,
        reply_queue_prefix: str = PREFIX,
        reply_queue_ttl_s: float = TTL_S,
        delete_s3_objects: bool = True,
        dedup_window: int = DEDUP_WINDOW,
        inputs_per_request: int = INPUTS_PER_REQUEST,
    ) -> None:
        session = session or boto3.Session()
        self.queue_url = queue_url
        self.result_queue_url = result_queue_url
        self.sqs = session.client("sqs", endpoint_url=endpoint_url)
        self.s3 = session.client("s3", endpoint_url=endpoint_url)
        self._reply_queue = ReplyQueue(
            self.sqs, prefix=reply_queue_prefix, ttl_s=reply_queue_ttl_s,
            on_replaced=self._forget_queue,
        )
        self._delete_s3 = delete_s3_objects
        self._dedup_window = dedup_window
        self._per_request = max(1, min(MAX_INPUTS_PER_REQUEST, inputs_per_request))
        self._max_size: int | None = None
        self._readers: dict[str, ResultReader] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the temporary reply queue, if this client made one."""
        url = self._reply_queue.url
        if url is not None:
            with _INBOXES_LOCK:
                _INBOXES.pop(self._inbox_key(url), None)
            self._reply_queue.delete()

    def _forget_queue(self, url: str) -> None:
        """A temporary reply queue replaced by a new one: its reader and inbox go with it."""
        self._readers.pop(url, None)
        with _INBOXES_LOCK:
            _INBOXES.pop(self._inbox_key(url), None)

    @property
    def reply_queue_url(self) -> str | None:
        """The temporary reply queue, once made."""
        return self._reply_queue.url

    # ------------------------------------------------------------------ sending

    def submit(
        self,
        inputs: str | Sequence[str],
        *,
        task: str = "embed",
        parameters: Mapping[str, Any] | None = None,
        id: str | None = None,
        ttl_s: float | None = None,
        deadline: float | None = None,
        reply_to: str | None = None,
    ) -> str:
        """Put one request on the queue; returns its id (a uuid4 when not given)."""
        request = {"inputs": inputs, "task": task, "parameters": parameters, "id": id,
                   "ttl_s": ttl_s, "deadline": deadline, "reply_to": reply_to}
        return self.submit_many([request])[0]

    def submit_many(
        self, requests: Iterable[RequestLike], *, on_sent: Callable[[int], None] | None = None
    ) -> list[str]:
        """Put many requests on the queue, in SendMessageBatch calls packed within 10 entries and
        the queue's size limit; `Failed` entries are retried. Each request is a text, a mapping of
        request fields, or a RequestV1. Returns the ids in order; raises ValueError (nothing
        sent) for an invalid or oversized request, SubmitFailed for what SQS still refused."""
        prepared = [self._request(r, n) for n, r in enumerate(requests)]
        if not prepared:
            return []
        limit = self.max_message_size()
        messages = [OutgoingMessage(_body(r, n)) for n, r in enumerate(prepared)]
        for n, message in enumerate(messages):
            if message.size > limit:
                raise InvalidRequest(
                    n, f"{message.size} bytes; the queue takes {limit}: split its inputs over "
                    "several requests", prepared[n].id,
                )
        fifo_keys = None
        if self.queue_url.endswith(".fifo"):  # the request id, hashed into SQS's alphabet
            fifo_keys = [hashlib.sha256(str(r.id).encode()).hexdigest() for r in prepared]
        report = send_all(
            lambda entries: self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries),
            messages, max_batch_bytes=limit, on_sent=on_sent, fifo_keys=fifo_keys,
        )
        ids = [str(r.id) for r in prepared]
        failed = {ids[i]: reason for i, reason in sorted(report.failed.items())}
        sent = [ids[i] for i in sorted(report.sent)]
        if report.interrupted:
            raise SubmitInterrupted(failed, sent, ids)
        if report.failed:
            raise SubmitFailed(failed, sent, ids)
        return ids

    def _request(self, request: RequestLike, n: int) -> RequestV1:
        if isinstance(request, RequestV1):
            fields: dict[str, Any] = request.model_dump(exclude_none=True)
        elif isinstance(request, str):
            fields = {"inputs": request}
        else:
            fields = {k: v for k, v in request.items() if v is not None}
        if isinstance(fields.get("inputs"), tuple):
            fields["inputs"] = list(fields["inputs"])
        fields.setdefault("id", str(uuid.uuid4()))
        if self.result_queue_url and "reply_to" not in fields:
            fields["reply_to"] = self.result_queue_url
        if not fields.get("parameters"):
            fields.pop("parameters", None)
        try:
            return RequestV1.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "request"
            raise InvalidRequest(n, f"{where}: {first['msg']}") from None

    def max_message_size(self) -> int:
        """The input queue's MaximumMessageSize (asked once; 256 KiB when it cannot be read)."""
        if self._max_size is None:
            self._max_size = int_attribute(
                self.sqs, self.queue_url, "MaximumMessageSize", HISTORICAL_MAX_MESSAGE_SIZE
            )
        return self._max_size

    # ------------------------------------------------------------------ reading

    def _reader(self, queue_url: str) -> ResultReader:
        reader = self._readers.get(queue_url)
        if reader is None:
            reader = ResultReader(
                self.sqs, self.s3, queue_url,
                dedup_window=self._dedup_window, delete_s3_objects=self._delete_s3,
            )
            self._readers[queue_url] = reader
        return reader

    def results(
        self, *, wait_s: int = 20, max_results: int | None = None, follow: bool = False
    ) -> Generator[Result, None, None]:
        """Results from the result queue (or this client's reply queue), each deleted once it
        has been yielded (with its S3 payload unless delete_s3_objects=False), duplicates
        dropped. Ends after `max_results`, or when a `wait_s` long poll brings nothing, unless
        `follow`. Stopping early puts the unread rest of a receive straight back.

        A consumer whose handling of a result fails can `throw(exc)` into the iterator: that
        result is put back (not deleted) and `exc` raised again. A receive brings up to 10; a
        consumer taking more than half the queue's visibility timeout over them has what it
        was handed deleted when it asks for the next, and the rest hidden for another timeout:
        otherwise all ten became visible again and another replica handled them again."""
        queue_url = self.result_queue_url or self._reply_queue.url
        if queue_url is None:
            raise ValueError("no result queue: give Client(result_queue_url=...)")
        reader = self._reader(queue_url)
        count = 0
        while max_results is None or count < max_results:
            polled = reader.poll(wait_s)
            if not polled.messages:  # the long poll brought nothing at all
                if follow:
                    continue
                return
            rest, yielded = list(polled.results), []
            held_since = time.monotonic()
            try:
                while rest and (max_results is None or count < max_results):
                    item = rest.pop(0)
                    yielded.append(item)
                    count += 1
                    try:
                        yield item.result
                    except Exception:  # thrown in (`.throw(exc)`): handling it failed
                        yielded.remove(item)
                        rest.insert(0, item)  # put back with the unread rest, not deleted
                        raise
                    if time.monotonic() - held_since > reader.visibility_timeout_s() / 2:
                        reader.done(yielded)
                        yielded = []
                        _hide_longer(reader, rest)
                        held_since = time.monotonic()
            finally:  # also when the consumer stops early (GeneratorExit at the yield)
                if rest:  # not handed over: the next receive of them is no duplicate
                    reader.forget(rest)  # first: a failing call below must not keep them seen
                    reader.release(rest)
                if yielded:
                    reader.done(yielded)

    # ------------------------------------------------------------------ submit and wait

    def embed(
        self, texts: str | Sequence[str], *, timeout_s: float = 60.0,
        parameters: Mapping[str, Any] | None = None, ttl_s: float | None = None,
    ) -> list[list[float]]:
        """One vector per text, in order."""
        return self._run("embed", texts, parameters, timeout_s, ttl_s)

    def classify(
        self, texts: str | Sequence[str], *, timeout_s: float = 60.0, ttl_s: float | None = None
    ) -> list[dict[str, Any]]:
        """One {"label", "score"} per text, in order."""
        return self._run("classify", texts, None, timeout_s, ttl_s)

    def generate(
        self, prompts: str | Sequence[str], *, timeout_s: float = 120.0,
        parameters: Mapping[str, Any] | None = None, ttl_s: float | None = None,
    ) -> list[str]:
        """One generated text per prompt, in order."""
        return self._run("generate", prompts, parameters, timeout_s, ttl_s)

    def _run(
        self, task: str, texts: str | Sequence[str], parameters: Mapping[str, Any] | None,
        timeout_s: float, ttl_s: float | None,
    ) -> list[Any]:
        """Submit the texts (split into requests), wait for exactly those ids, return the
        outputs in input order. The requests carry ttl_s (default: timeout_s), so a worker
        never spends a GPU on an answer nobody waits for any more."""
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            # checked before anything is sent: an infinite wait raised OverflowError after the
            # requests were on the queue, their results left for nobody
            raise ValueError(f"timeout_s: {timeout_s!r}; give a finite number of seconds > 0")
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            return []
        queue_url = self.result_queue_url or self._reply_queue.ensure()
        fields = {"task": task, "parameters": parameters, "reply_to": queue_url,
                  "ttl_s": ttl_s if ttl_s is not None else timeout_s}
        requests = self._split(items, fields)
        ids = [str(r.id) for r in requests]
        inbox = self._inbox(queue_url)
        inbox.expect(ids)
        self.submit_many(requests)
        try:
            results = inbox.wait_for(ids, timeout_s)
        except Exception as exc:
            if queue_url != self.result_queue_url:  # the reply queue was deleted under us
                self._reply_queue.lost(queue_url, exc)
            raise
        missing = [i for i in ids if i not in results]
        if missing:
            raise ResultTimeout(missing, timeout_s)
        outputs: list[Any] = []
        for request_id in ids:
            result = results[request_id]
            if not result.ok:
                raise RequestFailed(result)
            outputs.extend(result.outputs or [])
        return outputs

    def _split(self, items: list[str], fields: Mapping[str, Any]) -> list[RequestV1]:
        """The texts as requests of at most `inputs_per_request`, each within the queue's size
        limit (a group over it is halved until it fits: 32 texts of 10 KB made one 327 KB
        request the queue refused). An error names the text by its index in `items`."""
        limit = self.max_message_size()
        out: list[RequestV1] = []

        def place(offset: int, chunk: list[str]) -> None:
            try:
                request = self._request({**fields, "id": str(uuid.uuid4()), "inputs": chunk}, 0)
                size = OutgoingMessage(_body(request, 0)).size
            except InvalidRequest as exc:
                raise _for_input(exc, offset) from None
            if size <= limit:
                out.append(request)
            elif len(chunk) == 1:
                raise InvalidRequest(
                    offset, f"input {offset} makes a {size}-byte request; the queue takes {limit}"
                )
            else:
                half = len(chunk) // 2
                place(offset, chunk[:half])
                place(offset + half, chunk[half:])

        for start in range(0, len(items), self._per_request):
            place(start, items[start : start + self._per_request])
        return out

    def _inbox(self, queue_url: str) -> Inbox:
        key = self._inbox_key(queue_url)
        with _INBOXES_LOCK:
            inbox = _INBOXES.get(key)
            if inbox is None:
                inbox = Inbox(self._reader(queue_url))
                _INBOXES[key] = inbox
            return inbox

    def _inbox_key(self, queue_url: str) -> tuple[str, bool, int]:
        """Clients share an inbox only when their readers would act alike (a later
        Client(delete_s3_objects=False) had its payloads deleted by the first one's)."""
        return queue_url, self._delete_s3, self._dedup_window


_INPUT_AT = re.compile(r"^inputs\.(\d+)")


def _for_input(exc: InvalidRequest, offset: int) -> InvalidRequest:
    """An error in a request made from texts[offset:], renamed for the caller's list: "inputs.3"
    of the second request of 32 is input 35."""
    found = _INPUT_AT.match(exc.reason)
    if found is None:
        return InvalidRequest(offset, exc.reason)
    index = offset + int(found.group(1))
    return InvalidRequest(index, f"input {index}{exc.reason[found.end():]}")


def _hide_longer(reader: ResultReader, items: list[Received]) -> None:
    """Another visibility timeout for results received but not handed over yet; a failure
    only risks a duplicate (dropped by a reader that saw the first), so it is logged."""
    if not items:
        return
    try:
        reader.release(items, after_s=reader.visibility_timeout_s())
    except Exception as exc:
        log.warning("results held for a slow consumer could not be hidden longer: %s",
                    f"{type(exc).__name__}: {exc}"[:300])


def _body(request: RequestV1, n: int) -> str:
    """The request as JSON SQS takes: U+FFFE and U+FFFF, legal in JSON and Unicode but refused
    by SQS (InvalidMessageContents), are sent escaped; they can stand only inside strings, so
    the escape reads back as the same text. A lone surrogate cannot be sent at all: looked for
    first, as pydantic writes one in a key as U+FFFD without a word (and names no field when
    one in a value makes it fail)."""
    try:
        where = _surrogate_at(request.model_dump(exclude_none=True))
        body = "" if where else request.model_dump_json(exclude_none=True)
    except (ValueError, RecursionError) as exc:  # nested too deeply for pydantic (or for us)
        reason = f"cannot be written as JSON: {str(exc)[:200]}"
        raise InvalidRequest(n, reason, request.id) from None
    if where is not None:
        raise InvalidRequest(
            n, f"{where}: a lone surrogate (half of a UTF-16 pair, as a \\ud800 escape gives) "
            "cannot be written as UTF-8 JSON", request.id,
        )
    return body.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_at(value: Any, path: str = "") -> str | None:
    """Where in a request's fields a string or a key holds a lone surrogate, as a field path
    ("inputs.1", "parameters.stop.0"); None when none does."""
    if isinstance(value, str):
        return (path or "request") if _SURROGATE.search(value) else None
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    for key, item in items:
        if isinstance(key, str) and _SURROGATE.search(key):
            return f"{path or 'request'} (a key)"
        found = _surrogate_at(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None
