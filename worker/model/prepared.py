"""What `ModelRunner.prepare` hands the model thread: a batch's requests (`Item`: the encoded
request and its parameters) padded into tensor groups, one group per head group key."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from worker.seams import Encoded

Item = tuple[Encoded, Mapping[str, Any]]


@dataclass
class Group:
    """Sequences of one or more items padded into one tensor pair (CPU, pinned on CUDA)."""

    item_indexes: list[int]  # positions in Prepared.items
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    key: Hashable = None  # the head's group key: equal for every item here


@dataclass
class Prepared:
    """A collated, padded batch ready for the device. Built by `ModelRunner.prepare`."""

    items: list[Item]
    groups: list[Group] = field(default_factory=list)
    real_tokens: int = 0
    padded_tokens: int = 0

    @property
    def size(self) -> int:
        """Number of requests (items) in the batch."""
        return len(self.items)

    @property
    def n_sequences(self) -> int:
        return sum(len(enc.token_ids) for enc, _ in self.items)
