"""Continuous batching for `generate`: a decode session with its own KV cache (a transformers
`DynamicCache`) in which each row leaves as soon as its own sequence stops (EOS, its own
`max_new_tokens`, a stop string, its `max_time_s`) and new rows join between steps.

One step is one forward of every live row (one new token each). Rows join with a prefill of their
prompts (left-padded together, as `generate` pads them); their cache is then left-padded to the
session's length (or the session's to theirs) and concatenated on the batch axis. Padding is
masked and the position ids come from the attention mask, as in `generate`, so a row's greedy
tokens are the ones `generate` gives it. Rows that finished are dropped from the cache, and cache
columns that only padding is left in are trimmed off the left.

Token choice uses transformers' own logits processors (repetition penalty, temperature, top-k,
top-p), so sampling parameters mean what they mean to `generate`.

Failures are the caller's to handle: `join` and `step` raise, and the session is left as it was
before the call (join) or must be discarded (step: the cache may be half updated).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.stopping_criteria import StoppingCriteria

from worker.model.params import GenerateOptions, cut_at_stop


def special_stop_ids(tokenizer: Any, stop: Sequence[str]) -> frozenset[int]:
    """The ids of the stop strings that are a special token's text (`<|im_end|>`, `<|eot_id|>`:
    a chat model's end of turn, where its EOS is another token). Stop strings are looked for in
    the text decoded without special tokens, so these never matched: such a row ran on to
    max_new_tokens past its turn. They end a row as its EOS does."""
    if not stop:  # most rows: nothing to look up at each join
        return frozenset()
    specials = {str(t) for t in getattr(tokenizer, "all_special_tokens", ())}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials |= {str(t.content) for t in added.values() if getattr(t, "special", False)}
    ids = set()
    for text in stop:
        if text in specials:
            token_id = tokenizer.convert_tokens_to_ids(text)
            if isinstance(token_id, int) and token_id >= 0:
                ids.add(token_id)
    return frozenset(ids)


def eos_ids(model: PreTrainedModel) -> set[int]:
    """The token ids that end a sequence, as `generate` reads them (generation_config first)."""
    generation_config = getattr(model, "generation_config", None)
    value = getattr(generation_config, "eos_token_id", None)
    if value is None:
        value = getattr(model.config, "eos_token_id", None)
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, list | tuple) else {int(value)}


#: tokens decoded beyond the stop strings' length when looking for them at the end (see
#: stop_reached): a window's first tokens may decode unlike the same tokens mid-text (a leading
#: space dropped, half a UTF-8 character); these keep that edge away from where a stop can end
STOP_WINDOW_MARGIN = 8


def stop_reached(decode: Callable[[list[int]], str], ids: list[int], stop: Sequence[str]) -> bool:
    """Whether the text of `ids` holds one of the `stop` strings, for a row checked after every
    token: a stop string that was not there one token ago ends in the newest token's text, so
    only the last tokens need decoding, enough for the newest token's text, the longest stop
    string and a margin. Decoding the whole continuation at every step cost O(n²) (4,096 tokens:
    8 M tokens decoded, seconds of the model thread per row). A hit in a window is confirmed on
    the whole text, so the window's odd edge cannot invent a stop.
    """
    need = len(decode(ids[-1:])) + max(len(s) for s in stop) + STOP_WINDOW_MARGIN
    width = 2 * STOP_WINDOW_MARGIN
    window, text = ids[-width:], decode(ids[-width:])
    while len(window) < len(ids) and len(text) < need:
        width *= 2
        window, text = ids[-width:], decode(ids[-width:])
    if not cut_at_stop(text, stop)[1]:
        return False
    return len(window) == len(ids) or cut_at_stop(decode(ids), stop)[1]


class StopStrings(StoppingCriteria):
    """generate()'s stopping criterion for the static path: a row is done once its continuation
    holds a stop string, found as a session finds it (`stop_reached`), so both paths stop at the
    same token. generate() ran on to max_new_tokens before (the text was cut after, the device
    time spent). Not transformers' `stop_strings`: that looks at the prompt's last tokens too.
    One per generate() call: it keeps each row's continuation from the tokens of each step."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str]) -> None:
        self._decode = decode
        self._stop = stop
        self._rows: list[list[int]] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        newest = input_ids[:, -1].tolist()
        if self._rows is None:
            self._rows = [[] for _ in newest]
        done = []
        for row, token in zip(self._rows, newest, strict=True):
            row.append(int(token))
            done.append(stop_reached(self._decode, row, self._stop))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def logits_processors(options: GenerateOptions) -> LogitsProcessorList:
    """The processors `generate` applies for these options, in its order."""
    processors = LogitsProcessorList()
    if options.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(options.repetition_penalty))
    if options.do_sample:
        if options.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(options.temperature))
        if options.top_k > 0:
            processors.append(TopKLogitsWarper(options.top_k))
        if options.top_p < 1.0:
            processors.append(TopPLogitsWarper(options.top_p))
    return processors


def supports_sessions(model: PreTrainedModel) -> bool:
    """Whether the model's cache is plain per-layer key/value tensors a session can pad, merge
    and trim (not sliding-window or recurrent layers)."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception:
        return False
    return all(type(layer) is DynamicLayer for layer in cache.layers)


@dataclass
class Row:
    """One sequence in the session."""

    tag: Hashable
    options: GenerateOptions
    prompt: list[int]
    joined: float
    processors: LogitsProcessorList
    generated: list[int] = field(default_factory=list)
    stopped_by: str = ""
    stop_ids: frozenset[int] = frozenset()  # special tokens its stop strings name

    @property
    def greedy_plain(self) -> bool:
        return not self.options.do_sample and len(self.processors) == 0


@dataclass(frozen=True)
class Finished:
    tag: Hashable
    text: str
    tokens: int
    stopped_by: str  # "eos", "max_new_tokens", "stop", "max_time_s"


class DecodeSession:
    """Rows in flight on one model. Called from one thread."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        pad_id: int,
        device: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.device = device
        self.eos = eos_ids(model)
        # the cache's keyword: `cache` in newer transformers, `past_key_values` before
        forward_params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward_params else "past_key_values"
        # only the last position's logits are needed (older versions: all of them computed)
        self._extra: dict[str, Any] = (
            {"logits_to_keep": 1} if "logits_to_keep" in forward_params else {}
        )
        self._clock = clock
        self.rows: list[Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cache length]: 1 where a real token
        self._next: torch.Tensor | None = None  # [rows]: the token each row feeds next
        self.steps = 0

    def __len__(self) -> int:
        return len(self.rows)

    def reset(self) -> list[Row]:
        """Drop every row (after a failed step) and return them."""
        rows, self.rows = self.rows, []
        self._cache = self._mask = self._next = None
        return rows

    # ------------------------------------------------------------------ joining

    def join(
        self, entries: Sequence[tuple[Hashable, list[int], GenerateOptions]]
    ) -> list[Finished]:
        """Prefill these prompts and add them; those done after their first token come back."""
        if not entries:
            return []
        now = self._clock()
        width = max(len(ids) for _, ids, _ in entries)
        input_ids = torch.tensor(
            [[self.pad_id] * (width - len(ids)) + ids for _, ids, _ in entries], dtype=torch.long
        )
        mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for _, ids, _ in entries], dtype=torch.long
        )
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            logits = self._forward(input_ids, mask, cache)
        rows = [
            Row(tag, options, list(ids), now, logits_processors(options),
                stop_ids=special_stop_ids(self.tokenizer, options.stop))
            for tag, ids, options in entries
        ]
        chosen = self._choose(rows, logits)
        # nothing of the session changed until here: a failed prefill leaves it as it was
        first = len(self.rows)
        self._merge(rows, cache, mask, chosen)
        return self._settle(chosen, first)

    def _merge(
        self, rows: list[Row], cache: DynamicCache, mask: torch.Tensor, chosen: torch.Tensor
    ) -> None:
        if self._cache is None or self._mask is None or self._next is None or not self.rows:
            self.rows, self._cache, self._mask, self._next = rows, cache, mask, chosen
            return
        length = max(self._mask.shape[1], mask.shape[1])
        # every new tensor first, then the assignments, which cannot fail: torch.cat needs the
        # cache's memory twice over, so an out-of-memory here is likely, and a layer already
        # replaced would leave the session with layers of different batch sizes (its next step
        # failed, and every row in it was generated again from the start)
        merged = []
        for old, new in zip(_layers(self._cache), _layers(cache), strict=True):
            (old_k, old_v), (new_k, new_v) = _kv(old), _kv(new)
            keys = torch.cat([_pad_left(old_k, length), _pad_left(new_k, length)])
            values = torch.cat([_pad_left(old_v, length), _pad_left(new_v, length)])
            merged.append((old, keys, values))
        mask = torch.cat([_pad_left(self._mask, length), _pad_left(mask, length)])
        following = torch.cat([self._next, chosen])
        for layer, keys, values in merged:
            layer.keys, layer.values = keys, values
        self._mask, self._next = mask, following
        self.rows = self.rows + rows

    # ------------------------------------------------------------------ stepping

    def step(self) -> list[Finished]:
        """One token for every row; the rows that stopped leave and come back."""
        if not self.rows:
            return []
        assert self._cache is not None and self._mask is not None and self._next is not None
        ones = torch.ones((len(self.rows), 1), dtype=self._mask.dtype, device=self._mask.device)
        mask = torch.cat([self._mask, ones], dim=1)
        with torch.inference_mode():
            logits = self._forward(self._next[:, None], mask, self._cache)
        self._mask = mask
        self.steps += 1
        chosen = self._choose(self.rows, logits)
        self._next = chosen
        return self._settle(chosen, 0)

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """The last position's logits (float32) of each row; `cache` grows by one column per
        input position."""
        # positions count real tokens only, as generate() computes them from the mask
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kwarg: cache},
            **self._extra,
        )
        return out.logits[:, -1, :].to(torch.float32)

    def _choose(self, rows: list[Row], logits: torch.Tensor) -> torch.Tensor:
        """One token per row: argmax for plain greedy rows (all in one call), the row's logits
        processors (and sampling) for the others."""
        chosen = logits.argmax(dim=-1)
        for i, row in enumerate(rows):
            if row.greedy_plain:
                continue
            ids = torch.tensor([row.prompt + row.generated], device=logits.device)
            scores = row.processors(cast(torch.LongTensor, ids), logits[i : i + 1])
            if row.options.do_sample:
                probs = torch.softmax(scores, dim=-1)
                chosen[i] = torch.multinomial(probs, num_samples=1)[0, 0]
            else:
                chosen[i] = scores.argmax(dim=-1)[0]
        return chosen

    # ------------------------------------------------------------------ leaving

    def _settle(self, chosen: torch.Tensor, first: int) -> list[Finished]:
        """Append each row's token (rows from `first` on), take out the rows that stopped, trim
        the cache."""
        now = self._clock()
        tokens = [None] * first + chosen.tolist()
        keep: list[int] = []
        finished: list[Finished] = []
        for i, (row, token) in enumerate(zip(self.rows, tokens, strict=True)):
            if token is None:
                keep.append(i)
                continue
            row.generated.append(int(token))
            reason = self._stop_reason(row, int(token), now)
            if reason:
                finished.append(self._finish(row, reason))
            else:
                keep.append(i)
        if len(keep) < len(self.rows):
            self._keep(keep)
        return finished

    def _stop_reason(self, row: Row, token: int, now: float) -> str:
        if token in self.eos:
            return "eos"
        if token in row.stop_ids:
            return "stop"
        if len(row.generated) >= row.options.max_new_tokens:
            return "max_new_tokens"
        if row.options.stop and stop_reached(self._decode, row.generated, row.options.stop):
            return "stop"
        if row.options.max_time_s is not None and now - row.joined >= row.options.max_time_s:
            return "max_time_s"
        return ""

    def _finish(self, row: Row, reason: str) -> Finished:
        text = self._decode(row.generated)
        if row.options.stop:
            text = cut_at_stop(text, row.options.stop)[0]
        return Finished(row.tag, text, len(row.generated), reason)

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _keep(self, keep: list[int]) -> None:
        if not keep:
            self.reset()
            return
        assert self._cache is not None and self._mask is not None and self._next is not None
        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        # columns where every row left is padding: cut them off (a long row that joined late
        # no longer makes everyone attend over the left-padding of those that left)
        start = int((mask.sum(dim=0) > 0).int().argmax())
        for layer in _layers(self._cache):
            keys, values = _kv(layer)
            layer.keys = keys.index_select(0, index)[:, :, start:, :]
            layer.values = values.index_select(0, index)[:, :, start:, :]
        self._mask = mask[:, start:]
        self._next = self._next.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zeros before the sequence axis (axis 2 of a [batch, heads, seq, dim] cache, axis 1 of a
    [batch, seq] mask) up to `length`."""
    axis = 2 if tensor.dim() == 4 else 1
    missing = length - tensor.shape[axis]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers: plain DynamicLayers (`supports_sessions` checked it)."""
    return cast(list[DynamicLayer], cache.layers)


def _kv(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    assert layer.keys is not None and layer.values is not None
    return layer.keys, layer.values
