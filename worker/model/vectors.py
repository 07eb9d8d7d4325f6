"""Embedding vectors, text or image: the pooled tensor a tower returns -> one JSON-able row per
input, normalised unless a request said `normalize: false`, rounded, NON_FINITE where the model
produced NaN/inf."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

EMBED_DECIMALS = 9  # decimal places kept in embedding vectors (see unit_rows)

#: in place of a sequence's value where the model produced NaN/inf (e.g. a float16 overflow)
NON_FINITE: Any = object()


def pooled_features(output: Any) -> torch.Tensor:
    """The tensor of a get_*_features call or a backbone's forward: transformers 5 returns a
    model output (the projected features in pooler_output), earlier versions the tensor."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden[:, 0]  # the class token
    return torch.as_tensor(output[0])


def unit_rows(pooled: torch.Tensor, params: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One row per input: L2-normalised unless its request said normalize=false, rounded."""
    pooled = pooled.to(torch.float32).cpu()
    normalize = torch.tensor([bool(p.get("normalize", True)) for p in params])
    vectors = torch.where(normalize.unsqueeze(1), F.normalize(pooled, p=2, dim=1), pooled)
    finite = torch.isfinite(vectors).all(dim=1).tolist()
    # float32 values printed as Python floats take 17 digits; rounded to EMBED_DECIMALS they
    # print short (a 384-d vector: ~8.4 KB of JSON -> ~5.2 KB), and the change (<= 5e-10) is
    # below float32 resolution for the components of a unit vector.
    rows = torch.round(vectors.to(torch.float64), decimals=EMBED_DECIMALS).tolist()
    return [row if ok else NON_FINITE for row, ok in zip(rows, finite, strict=True)]
