"""Text to token ids, once per request, without padding and never truncated: the encoder the
runner's `encode` uses, and the input limits it enforces. No torch here.

A request longer than the limit is refused (`InputTooLong`, an error result), since a truncated
embedding or prompt would be a silently wrong answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from tokenizers import Tokenizer

from worker.errors import InputTooLong, InvalidParameters, RequestRejected
from worker.seams import Encoded

# Tokenizers without a real limit report a huge sentinel (int(1e30)) as model_max_length.
NO_LIMIT = 1_000_000


# Models whose position ids start after the padding index (transformers'
# create_position_ids_from_input_ids): max_position_embeddings counts padding_idx + 1 positions
# no token can have. RoBERTa's 514 is 512 usable; a 513-token input got past the limit and
# failed in the forward (index out of range: a ModelError redelivered to the DLQ on CPU, a
# device-side assert on CUDA) instead of InputTooLong.
PADDING_OFFSET_MODELS = frozenset({
    "roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "camembert",
    "longformer", "mpnet", "data2vec-text", "ibert", "luke", "esm", "xmod", "markuplm",
})


def model_position_limit(config: Any) -> int | None:
    """How many positions the model has (its hard ceiling on prompt + generated tokens)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            pad = getattr(config, "pad_token_id", None)
            offset = getattr(config, "model_type", None) in PADDING_OFFSET_MODELS
            if offset and isinstance(pad, int):
                return max(1, value - pad - 1)
            return value
    text_config = getattr(config, "text_config", None)  # CLIP / SigLIP: the text tower's
    if text_config is not None and text_config is not config:
        return model_position_limit(text_config)
    return None


def sentence_transformers_max_seq_length(model_dir: Path) -> int | None:
    """The max_seq_length a sentence-transformers model folder declares (its trained length)."""
    try:
        data = json.loads((model_dir / "sentence_bert_config.json").read_text())
        value = data.get("max_seq_length")
        return int(value) if isinstance(value, int) and value > 0 else None
    except (OSError, ValueError):
        return None


def resolve_input_limit(
    tokenizer: Any, position_limit: int | None, model_dir: Path, max_input_tokens: int
) -> int:
    """The longest input accepted: the tokenizer's and the model's limit (the smaller), or the
    sentence-transformers trained length, or an explicit `max_input_tokens` below the model's."""
    if max_input_tokens < 0:
        raise ValueError(f"max_input_tokens must be >= 0, not {max_input_tokens}")
    hard_limit = int(getattr(tokenizer, "model_max_length", NO_LIMIT) or NO_LIMIT)
    if hard_limit >= NO_LIMIT:
        hard_limit = position_limit or NO_LIMIT
    if position_limit is not None:
        hard_limit = min(hard_limit, position_limit)
    if max_input_tokens > hard_limit:
        raise ValueError(
            f"max_input_tokens={max_input_tokens} exceeds the model's limit of {hard_limit} tokens"
        )
    if max_input_tokens:
        return max_input_tokens
    # A sentence-transformers folder declares the length it was trained for (256 for
    # all-MiniLM-L6-v2); sentence-transformers truncates there, we refuse beyond it.
    trained = sentence_transformers_max_seq_length(model_dir)
    return hard_limit if trained is None else min(hard_limit, trained)


def resolve_pad_id(tokenizer: Any) -> int:
    """The id padding positions hold (masked out; decoder-only models often have no pad token)."""
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


def private_backend(tokenizer: Any) -> Tokenizer | None:
    """A private copy of the fast tokenizer with truncation and padding switched off.

    The shared backend carries state (tokenizer.json may set truncation at 128 and padding);
    the transformers wrapper mutates it on every call, which is neither thread-safe nor free.
    A private copy, configured once, encodes concurrently (encode_batch releases the GIL).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    private = Tokenizer.from_str(backend.to_str())
    private.no_truncation()
    private.no_padding()
    probe = "Probe sentence, with punctuation: 42 apples!"
    if private.encode(probe).ids != tokenizer(probe)["input_ids"]:
        # Some wrappers add special tokens outside the backend: use the wrapper (locked).
        return None
    return private


class TextEncoder:
    """One tokenizer's text -> `Encoded`, thread-safe, with the model's input limits."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_input_tokens: int,
        position_limit: int | None,
        chat_template: bool,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self.position_limit = position_limit
        # Only where the tokenizer has one: a base model's prompt is the text itself.
        self.chat_template = chat_template and bool(getattr(tokenizer, "chat_template", None))
        self._backend = private_backend(tokenizer)
        self._lock = threading.Lock()  # the wrapper fallback is not thread-safe

    def tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        if self._backend is not None:
            # encode_batch_fast: the same ids without the character offsets nobody reads here,
            # at about half the CPU (tokenizers >= 0.21); it releases the GIL like encode_batch
            encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
            return [e.ids for e in encode(texts, add_special_tokens=add_special_tokens)]
        with self._lock:
            out = self.tokenizer(
                texts, add_special_tokens=add_special_tokens, truncation=False, padding=False
            )
        return [list(ids) for ids in out["input_ids"]]

    def apply_chat_template(self, text: str) -> str:
        return cast(
            str,
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            ),
        )

    def encode(self, texts: list[str], reserved_positions: int = 0) -> Encoded:
        """Tokenise one request's inputs. `reserved_positions`: positions the output will take
        (generate's max_new_tokens), so prompt + output fit the model. Raises InputTooLong."""
        [encoded] = self.encode_many([(texts, reserved_positions)])
        if isinstance(encoded, RequestRejected):
            raise encoded
        return encoded

    def encode_many(
        self, requests: Sequence[tuple[list[str], int]]
    ) -> list[Encoded | RequestRejected]:
        """Several requests' inputs in one tokenizer call (one receive's worth: the per-call
        cost is paid once); each request's own refusal in its place instead of raising."""
        prompts: list[str] = []
        for texts, _ in requests:
            prompts += [self.apply_chat_template(t) for t in texts] if self.chat_template else texts
        # the chat template already holds BOS and friends
        ids = self.tokenize(prompts, add_special_tokens=not self.chat_template) if prompts else []
        out: list[Encoded | RequestRejected] = []
        cursor = 0
        for texts, reserved in requests:
            mine, cursor = ids[cursor : cursor + len(texts)], cursor + len(texts)
            try:
                out.append(self._checked(mine, reserved))
            except RequestRejected as exc:
                out.append(exc)
        return out

    def _checked(self, ids: list[list[int]], reserved_positions: int) -> Encoded:
        if not ids:
            raise RequestRejected("inputs must not be empty")
        for index, seq in enumerate(ids):
            if len(seq) > self.max_input_tokens:
                raise InputTooLong(index, len(seq), self.max_input_tokens)
            if len(seq) == 0:
                raise RequestRejected(f"input {index} encodes to no tokens")
        if reserved_positions and self.position_limit is not None:
            self._check_positions(ids, reserved_positions, self.position_limit)
        return Encoded(ids)

    @staticmethod
    def _check_positions(ids: list[list[int]], reserved: int, positions: int) -> None:
        if reserved >= positions:  # no prompt could fit: the parameter is what is wrong
            raise InvalidParameters(
                f"parameter 'max_new_tokens' must be at most {positions - 1} for this model "
                f"(its {positions} positions hold the prompt too), not {reserved}"
            )
        for index, seq in enumerate(ids):
            if len(seq) + reserved > positions:
                raise InputTooLong(
                    index,
                    len(seq),
                    positions - reserved,
                    f"input {index} has {len(seq)} tokens; with max_new_tokens={reserved} the "
                    f"model's {positions} positions allow at most {positions - reserved} "
                    "input tokens",
                )
