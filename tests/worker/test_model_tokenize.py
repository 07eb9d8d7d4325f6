"""The text encoder with MiniLM's real tokenizer: once per request, never truncated, thread-safe
in both its fast path (a private backend) and the locked wrapper fallback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from worker.errors import InputTooLong, InvalidParameters, RequestRejected
from worker.model.tokenize import TextEncoder, resolve_input_limit

LONG_TEXT = " ".join(f"word{i}" for i in range(200))  # ~600 WordPiece tokens


@pytest.fixture(scope="module")
def fast_tokenizer(minilm_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def encoder(tokenizer: object, limit: int = 512, positions: int | None = None) -> TextEncoder:
    return TextEncoder(
        tokenizer, max_input_tokens=limit, position_limit=positions, chat_template=False
    )


def test_the_fast_path_ignores_the_tokenizer_files_truncation_and_padding(
    minilm_dir: Path,
) -> None:
    """MiniLM's tokenizer.json truncates at 128 and pads to 128 (set here again, as whether the
    wrapper keeps that at load differs between transformers versions); our copy does neither."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    tokenizer.backend_tokenizer.enable_truncation(max_length=128)
    tokenizer.backend_tokenizer.enable_padding(length=128)
    text = " ".join(["word"] * 300)
    fast = encoder(tokenizer)
    assert fast._backend is not None
    long, short = fast.encode([text, "Short."]).token_ids
    assert (len(long), len(short)) == (302, 4)  # [CLS] + words + [SEP], unpadded
    with pytest.raises(InputTooLong, match="input 0 has 302 tokens; the limit is 256"):
        encoder(tokenizer, limit=256).encode([text])


def test_the_locked_wrapper_fallback_gives_the_same_ids_under_threads(
    fast_tokenizer: object,
) -> None:
    """Where the backend cannot be copied (no fast tokenizer, or a wrapper that adds tokens
    outside it) the encoder calls the transformers wrapper under a lock."""
    fast, wrapper = encoder(fast_tokenizer), encoder(fast_tokenizer)
    wrapper._backend = None  # what private_backend() returns for such a tokenizer
    texts = [f"Sentence number {i}, with punctuation: {i * 7} apples!" for i in range(120)]
    texts.append(" ".join(["word"] * 300))  # the wrapper is told not to truncate either
    expected = [fast.encode([t]).token_ids for t in texts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda t: wrapper.encode([t]).token_ids, texts))
    assert got == expected


def test_bad_inputs_are_rejected(fast_tokenizer: object) -> None:
    with pytest.raises(RequestRejected, match="inputs must not be empty") as info:
        encoder(fast_tokenizer).encode([])
    assert info.value.error_type == "InvalidRequest"
    with pytest.raises(InputTooLong) as too_long:
        encoder(fast_tokenizer).encode(["fine", LONG_TEXT])
    assert too_long.value.index == 1 and too_long.value.limit == 512


def test_reserved_positions_count_against_the_models_positions(fast_tokenizer: object) -> None:
    text = " ".join(["word"] * 90)  # 92 tokens
    limited = encoder(fast_tokenizer, limit=128, positions=128)
    assert len(limited.encode([text], reserved_positions=36).token_ids[0]) == 92
    with pytest.raises(InputTooLong, match="with max_new_tokens=37 the model's 128 positions"):
        limited.encode([text], reserved_positions=37)


def test_max_new_tokens_no_prompt_could_fit_beside_names_the_parameter(
    fast_tokenizer: object,
) -> None:
    """max_new_tokens=200 on a 128-position model refused every prompt, a 1-token one too, as
    InputTooLong: "allow at most -72 input tokens", naming the input, not the parameter."""
    limited = encoder(fast_tokenizer, limit=128, positions=128)
    with pytest.raises(InvalidParameters, match="'max_new_tokens' must be at most 127") as info:
        limited.encode(["hi"], reserved_positions=200)
    assert info.value.error_type == "InvalidParameters"


@pytest.mark.parametrize(
    ("model_max_length", "positions", "asked", "expected"),
    [
        (512, 128, 0, 128),  # the smaller of tokenizer and model
        (int(1e30), 2048, 0, 2048),  # a tokenizer without a real limit: the model's
        (int(1e30), None, 0, 1_000_000),  # neither knows: effectively unlimited
        (512, 512, 100, 100),  # an explicit limit below the model's
    ],
)
def test_input_limit(
    tmp_path: Path, model_max_length: int, positions: int | None, asked: int, expected: int
) -> None:
    tokenizer = SimpleNamespace(model_max_length=model_max_length)
    assert resolve_input_limit(tokenizer, positions, tmp_path, asked) == expected


def test_input_limit_beyond_the_model_or_negative_is_refused(tmp_path: Path) -> None:
    tokenizer = SimpleNamespace(model_max_length=512)
    with pytest.raises(ValueError, match="exceeds the model's limit of 128 tokens"):
        resolve_input_limit(tokenizer, 128, tmp_path, 129)
    with pytest.raises(ValueError, match="must be >= 0"):
        resolve_input_limit(tokenizer, 128, tmp_path, -1)


def test_a_sentence_transformers_folder_declares_its_trained_length(tmp_path: Path) -> None:
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    tokenizer = SimpleNamespace(model_max_length=512)
    assert resolve_input_limit(tokenizer, 512, tmp_path, 0) == 256
    assert resolve_input_limit(tokenizer, 512, tmp_path, 400) == 400  # explicit wins


def test_a_roberta_models_limit_leaves_out_the_positions_before_its_padding_index(
    bpe_tokenizer: Any, tmp_path: Path
) -> None:
    """RoBERTa-family position ids start after padding_idx: max_position_embeddings 66 holds
    64 tokens (514 holds 512). The limit was taken as 66: an input of 65 or 66 tokens passed and
    failed in the forward (index out of range; on CUDA a device-side assert for the whole batch)
    instead of InputTooLong."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    from worker.model import ModelRunner

    tokenizer = bpe_tokenizer
    tokenizer.model_max_length = int(1e30)  # no model_max_length in its files: the sentinel
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
    )
    RobertaModel(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    runner = ModelRunner.load(str(tmp_path), "embed", device="cpu")
    assert runner.max_input_tokens == 66 - tokenizer.pad_token_id - 1
    ids = runner.tokenizer("a " * 200)["input_ids"]
    with pytest.raises(InputTooLong):
        runner.encode([runner.tokenizer.decode(ids[: runner.max_input_tokens + 1])], {})
    longest = runner.encode([runner.tokenizer.decode(ids[: runner.max_input_tokens])], {})
    [vectors] = runner.run(runner.prepare([(longest, {})]))
    assert isinstance(vectors, list)  # the longest accepted input runs
