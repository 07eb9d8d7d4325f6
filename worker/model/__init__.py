"""The model adapter: the only package in the project that imports torch and transformers.

    params     torch-free: each task's parameters, validated (InvalidParameters names the bad one)
    tokenize   torch-free: text -> token ids once per request, the input limits (never truncated)
    device     which device and dtype, CPU threads, and what a device failure looks like
    heads      one head per task: embed (mean pooling), classify (softmax top label), generate
    runner     ModelRunner: load, encode, prepare, run (OOM split, poison isolation, device
               faults), warm_up, probe

`from worker.model import ModelRunner` works as it always did, but the torch-side names load on
first use: importing `worker.model.params` (the contract does) must not cost a torch import.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

# OpenMP worker threads that spin while idle steal the CPU from everything else in the process
# (tokenising, JSON, SQS calls) and from neighbours. With the cores shared, spinning made a batched
# forward up to 5x slower; on idle cores the two policies are equal (bench/omp_wait_policy.py).
# It must be set before torch (libgomp) loads, so here: every module of this package that imports
# torch runs after this file. An explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from worker.errors import InputTooLong, InvalidParameters, RequestRejected
from worker.model.params import (
    DEFAULT_MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_CAP,
    GenerateOptions,
    parse_generate_options,
    validate_parameters,
)
from worker.seams import Encoded, ModelFailure, Outputs
from worker.tasks import TASKS, Task

if TYPE_CHECKING:
    from worker.model.device import (
        available_cpus,
        configure_threads,
        find_device_fault,
        is_device_fault,
        is_out_of_memory,
        resolve_device,
        resolve_dtype,
    )
    from worker.model.heads import HEADS, Head
    from worker.model.prepared import Prepared
    from worker.model.runner import ModelRunner
    from worker.model.tokenize import TextEncoder
    from worker.model.vectors import EMBED_DECIMALS

_LAZY = {
    "available_cpus": "worker.model.device",
    "configure_threads": "worker.model.device",
    "find_device_fault": "worker.model.device",
    "is_device_fault": "worker.model.device",
    "is_out_of_memory": "worker.model.device",
    "resolve_device": "worker.model.device",
    "resolve_dtype": "worker.model.device",
    "EMBED_DECIMALS": "worker.model.vectors",
    "HEADS": "worker.model.heads",
    "Head": "worker.model.heads",
    "ModelRunner": "worker.model.runner",
    "Prepared": "worker.model.prepared",
    "TextEncoder": "worker.model.tokenize",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "EMBED_DECIMALS",
    "HEADS",
    "MAX_NEW_TOKENS_CAP",
    "TASKS",
    "Encoded",
    "GenerateOptions",
    "Head",
    "InputTooLong",
    "InvalidParameters",
    "ModelFailure",
    "ModelRunner",
    "Outputs",
    "Prepared",
    "RequestRejected",
    "Task",
    "TextEncoder",
    "available_cpus",
    "configure_threads",
    "find_device_fault",
    "is_device_fault",
    "is_out_of_memory",
    "parse_generate_options",
    "resolve_device",
    "resolve_dtype",
    "validate_parameters",
]
