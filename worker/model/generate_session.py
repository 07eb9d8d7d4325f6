"""`GenerateSession`: continuous batching for `generate` in the runner's terms. Prepared batches
join a `DecodeSession` between decode steps and each request comes back as soon as its own
inputs stopped; what fails goes back through the runner's static path."""

from __future__ import annotations

import itertools
import logging
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from worker.model.decode import DecodeSession, Finished
from worker.model.device import empty_cache, find_device_fault
from worker.model.isolation import DeviceFault
from worker.model.params import GenerateOptions, parse_generate_options
from worker.model.prepared import Item, Prepared
from worker.seams import ModelFailure, Outputs

log = logging.getLogger("worker.model")

T = TypeVar("T")


class GenerateSession:
    """Continuous batching over a `DecodeSession`, in the runner's terms: prepared batches join
    (`add`), `step` decodes one token for every row, and each request comes back, with its
    outputs or a `ModelFailure`, as soon as all its inputs stopped.

    Failures end as the static path's do: a device fault fails every request in the session
    with DeviceError; any other failure (out of memory included) takes the requests it touched
    out of the session and runs them through the static path (`ModelRunner._run_items`: OOM
    halving down to one request -> OutOfMemory, poison isolation -> ModelError)."""

    def __init__(
        self,
        decode: DecodeSession,
        *,
        group_key: Callable[[Mapping[str, Any]], Hashable],
        run_static: Callable[[list[Item]], list[Outputs | ModelFailure]],
        device: str,
    ) -> None:
        self._decode = decode
        self._group_key = group_key  # the head's: requests with equal keys share a forward
        self._run_static = run_static  # the runner's static path, OOM split and isolation
        self._device = device
        self._requests: dict[int, _Request] = {}
        self._ids = itertools.count()

    @property
    def active(self) -> int:
        """Requests in the session (not yet answered)."""
        return len(self._requests)

    @property
    def rows(self) -> int:
        """Sequences in the session's cache."""
        return len(self._decode)

    def add(self, prepared: Prepared, tags: Sequence[T]) -> list[tuple[T, Outputs | ModelFailure]]:
        """The requests of `prepared` (one tag each) join; those already done come back."""
        joining: list[int] = []
        entries: list[tuple[Hashable, list[int], GenerateOptions]] = []
        for (enc, params), tag in zip(prepared.items, tags, strict=True):
            key = next(self._ids)
            self._requests[key] = _Request(tag, (enc, params), [None] * len(enc.token_ids))
            joining.append(key)
            options = parse_generate_options(params)
            entries += [((key, j), list(ids), options) for j, ids in enumerate(enc.token_ids)]
        try:
            finished = self._decode.join(entries)
        except Exception as exc:
            fault = _device_fault_of(exc)
        else:
            return self._collect(finished)
        # out of the except block: its traceback (the failed forward's frames, holding the
        # session's cache and activations) is gone before the static path runs them again
        return self._failed(fault, joining)

    def step(self) -> list[tuple[Any, Outputs | ModelFailure]]:
        """One token for every row; the requests that are done come back."""
        try:
            finished = self._decode.step()
        except Exception as exc:
            fault = _device_fault_of(exc)
        else:
            return self._collect(finished)
        rows = self._decode.reset()  # the cache may be half updated: start again
        keys = list(dict.fromkeys(row.tag[0] for row in rows))  # type: ignore[index]
        return self._failed(fault, keys)

    def abandon(self) -> list[Any]:
        """Every request's tag, the session emptied (the caller fails them)."""
        self._decode.reset()
        requests, self._requests = list(self._requests.values()), {}
        return [r.tag for r in requests]

    def _collect(self, finished: list[Finished]) -> list[tuple[Any, Outputs | ModelFailure]]:
        out: list[tuple[Any, Outputs | ModelFailure]] = []
        for done in finished:
            key, index = cast(tuple[int, int], done.tag)
            request = self._requests[key]
            request.texts[index] = done.text
            if all(text is not None for text in request.texts):
                del self._requests[key]
                out.append((request.tag, list(request.texts)))
        return out

    def _failed(
        self, device_fault: str | None, keys: list[int]
    ) -> list[tuple[Any, Outputs | ModelFailure]]:
        if device_fault is not None:
            return self._all_failed(device_fault)
        empty_cache(self._device)
        requests = [self._requests.pop(key) for key in keys]
        # anything else: the static path answers them, with its OOM split and poison isolation
        buckets: dict[Hashable, list[_Request]] = {}
        for request in requests:
            buckets.setdefault(self._group_key(request.item[1]), []).append(request)
        out: list[tuple[Any, Outputs | ModelFailure]] = []
        try:
            for group in buckets.values():
                outputs = self._run_static([r.item for r in group])
                out += [(r.tag, o) for r, o in zip(group, outputs, strict=True)]
        except DeviceFault as fault:
            for request in requests:
                self._requests[next(self._ids)] = request
            return self._all_failed(str(fault))
        return out

    def _all_failed(self, message: str) -> list[tuple[Any, Outputs | ModelFailure]]:
        self._decode.reset()
        requests, self._requests = list(self._requests.values()), {}
        return [(r.tag, ModelFailure("DeviceError", message)) for r in requests]


def _device_fault_of(exc: BaseException) -> str | None:
    """"Type: message" of the device fault in a failed session call, else None; the call's
    frames cleared, for its traceback holds the failed forward's frames (the session's whole
    cache, the activations), which the retry on the static path needs the memory of."""
    cause = find_device_fault(exc)
    if cause is not None:
        log.error("device fault; failing every request in the session", exc_info=exc)
    traceback.clear_frames(exc.__traceback__)
    return f"{type(cause).__name__}: {cause}" if cause is not None else None


@dataclass
class _Request:
    tag: Any
    item: Item
    texts: list[str | None]
