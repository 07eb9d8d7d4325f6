"""One batch on the device and what a failure does to it, for the text and the image runners
alike (the item and group types differ; the rules do not):

- a device fault (a sticky CUDA error) fails the whole prepared batch, every group of it: CUDA
  reports faults asynchronously, so outputs computed before it in the batch are not trusted;
- out of device memory: empty the cache, halve the batch and run each half, down to one request
  (`OutOfMemory` for a request too large even alone);
- any other error: run each request alone, so the one that breaks the model gets `ModelError`
  and the others their results;
- non-finite outputs (a float16 overflow) fail only their own request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from worker.model.device import empty_cache, find_device_fault, is_out_of_memory
from worker.model.vectors import NON_FINITE
from worker.seams import ModelFailure, Outputs

log = logging.getLogger("worker.model")

ItemT = TypeVar("ItemT")
GroupT = TypeVar("GroupT")


class DeviceFault(Exception):
    """Raised out of the split recursion: the whole batch fails with DeviceError."""


@dataclass(frozen=True)
class BatchOps(Generic[ItemT, GroupT]):
    """What a runner supplies: how its items become a group on the device and back."""

    collate: Callable[[list[ItemT]], GroupT]  # a part of a split batch, collated anew
    forward: Callable[[GroupT, list[ItemT]], list[Any]]  # one value per row
    rows: Callable[[ItemT], int]  # rows (sequences, images) an item puts in the forward
    too_large_alone: Callable[[ItemT], str]  # the OutOfMemory message for one item alone
    device: str


def run_groups(
    items: Sequence[ItemT],
    groups: Iterable[tuple[list[int], GroupT]],
    ops: BatchOps[ItemT, GroupT],
) -> list[Outputs | ModelFailure]:
    """Every group of a prepared batch, each output at its item's index."""
    results: list[Outputs | ModelFailure] = [ModelFailure("ModelError", "not run") for _ in items]
    try:
        for indexes, group in groups:
            outputs = run_items([items[i] for i in indexes], group, ops)
            for index, output in zip(indexes, outputs, strict=True):
                results[index] = output
    except DeviceFault as fault:
        return [ModelFailure("DeviceError", str(fault)) for _ in items]
    return results


def run_items(
    items: list[ItemT], group: GroupT | None, ops: BatchOps[ItemT, GroupT]
) -> list[Outputs | ModelFailure]:
    """One group's forward, split or isolated on failure; raises DeviceFault."""
    if group is None:
        group = ops.collate(items)
    per_row: list[Any] = []
    error: str | None = None
    fault: str | None = None
    oom = False
    try:
        with torch.inference_mode():
            per_row = ops.forward(group, items)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        oom, cause = is_out_of_memory(exc), find_device_fault(exc)
        if cause is not None:
            fault = f"{type(cause).__name__}: {cause}"
            log.error("device fault; failing the whole batch", exc_info=True)
        elif not oom and len(items) == 1:
            log.warning("model error", exc_info=True)
    # Act only after leaving the except block: while it runs, the traceback keeps the failed
    # forward's frames, and with them its activations on the device, alive.
    if error is None:
        return per_item(items, per_row, ops.rows)
    if fault is not None:
        raise DeviceFault(fault)
    if oom:
        empty_cache(ops.device)
        if len(items) == 1:
            return [ModelFailure("OutOfMemory", ops.too_large_alone(items[0]))]
        half = len(items) // 2
        log.warning("out of device memory; splitting batch of %d requests", len(items))
        return run_items(items[:half], None, ops) + run_items(items[half:], None, ops)
    if len(items) == 1:
        return [ModelFailure("ModelError", error)]
    return [out for item in items for out in run_items([item], None, ops)]


def per_item(
    items: list[ItemT], per_row: list[Any], rows: Callable[[ItemT], int]
) -> list[Outputs | ModelFailure]:
    """The forward's rows back to their items; non-finite values fail only their own item."""
    outputs: list[Outputs | ModelFailure] = []
    cursor = 0
    for item in items:
        n = rows(item)
        values = per_row[cursor : cursor + n]
        cursor += n
        if any(value is NON_FINITE for value in values):
            # json.dumps(allow_nan=False) would refuse it anyway; a NaN vector is no answer
            outputs.append(
                ModelFailure("ModelError", "the model produced non-finite values (NaN/inf)")
            )
        else:
            outputs.append(values)
    return outputs
