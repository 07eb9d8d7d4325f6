"""One head per task: the runner dispatches through HEADS, so a task is a head, not a branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from worker.model import ModelRunner
from worker.model.heads import HEADS, EmbedHead, HeadInput
from worker.model.params import VALIDATORS
from worker.tasks import IMAGE_TASKS, TASKS


def test_every_task_has_a_head_and_a_validator() -> None:
    from worker.model.image_heads import IMAGE_HEADS

    # text tasks: a Head for ModelRunner; image tasks: an ImageHead for ImageModelRunner
    assert set(HEADS) == set(TASKS) - IMAGE_TASKS
    assert set(IMAGE_HEADS) == IMAGE_TASKS
    assert set(HEADS) | set(IMAGE_HEADS) == set(TASKS) == set(VALIDATORS)
    assert all({**HEADS, **IMAGE_HEADS}[task].task == task for task in TASKS)


def test_generate_pads_on_the_left_and_the_others_on_the_right(
    tiny_embed_model: Path, tiny_generate_model: Path
) -> None:
    for path, task, pad_left in ((tiny_embed_model, "embed", False),
                                 (tiny_generate_model, "generate", True)):
        runner = ModelRunner.load(str(path), task, device="cpu")  # type: ignore[arg-type]
        short, long = runner.encode(["Hello"], {}), runner.encode(["Hello world, again"], {})
        [group] = runner.prepare([(short, {}), (long, {})]).groups
        mask = group.attention_mask[0].tolist()
        padding = [i for i, m in enumerate(mask) if m == 0]
        assert padding, "the short row must be padded"
        assert (padding[0] == 0) is pad_left  # padding before the prompt, or after the text
        assert group.input_ids[0, padding[0]].item() == runner.head.pad_id


class ClsPoolingHead(EmbedHead):
    """A different embed head (the [CLS] vector): what adding a head looks like."""

    def forward(self, batch: HeadInput) -> list[Any]:
        hidden = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)[0]
        return [row for row in hidden[:, 0].to(torch.float32).cpu().tolist()]


def test_a_new_head_needs_no_runner_change(
    tiny_embed_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setitem(HEADS, "embed", ClsPoolingHead)
    runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")
    assert isinstance(runner.head, ClsPoolingHead)
    texts = ["A man is eating food.", "Short."]
    [vectors] = runner.run(runner.prepare([(runner.encode(texts, {}), {})]))
    tokenizer = AutoTokenizer.from_pretrained(tiny_embed_model)
    model = AutoModel.from_pretrained(tiny_embed_model).eval()
    with torch.inference_mode():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt"))[0][:, 0]
    assert torch.allclose(torch.tensor(vectors), expected, atol=1e-5)


@pytest.mark.parametrize("config_pad", [None, 3])
def test_a_decoder_classifier_answers_a_text_the_same_whatever_shares_its_batch(
    tmp_path: Path, bpe_tokenizer: Any, config_pad: int | None
) -> None:
    """HF's decoder sequence classifiers (GPT-2, Llama, ...) classify each row's last token
    that is not `config.pad_token_id`. With none set (GPT-2's default) every request of two
    inputs failed (ValueError, retried to the DLQ); with one other than the tokenizer's pad,
    the padding was taken for text and a label changed with a longer neighbour."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = bpe_tokenizer
    torch.manual_seed(5)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=0, pad_token_id=config_pad, num_labels=3,
    )
    GPT2ForSequenceClassification(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    runner = ModelRunner.load(str(tmp_path), "classify", device="cpu")
    short = runner.encode(["Hello world"], {})
    longer = runner.encode(["The quick brown fox jumps over the lazy dog, and again."], {})
    [alone] = runner.run(runner.prepare([(short, {})]))
    [batched, _] = runner.run(runner.prepare([(short, {}), (longer, {})]))
    [both] = runner.run(runner.prepare([(runner.encode(["Hello world", "x y z w v"], {}), {})]))
    assert isinstance(alone, list) and isinstance(batched, list) and isinstance(both, list)
    assert batched[0]["label"] == alone[0]["label"] == both[0]["label"]
    assert batched[0]["score"] == pytest.approx(alone[0]["score"], abs=1e-5)


def test_siglip_text_is_embedded_as_trained_whatever_shares_its_batch(
    tmp_path: Path, bpe_tokenizer: Any
) -> None:
    """SigLIP's text tower pools the last position and was trained on text padded to its full
    length, unmasked. Padded to the batch's longest, a text's vector changed with its
    neighbours (cosine 0.73 alone vs beside a longer text): a retrieval index built from it
    would depend on what happened to share each batch."""
    from transformers import SiglipConfig, SiglipModel

    tokenizer = bpe_tokenizer
    torch.manual_seed(7)
    config = SiglipConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 64},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    )
    SiglipModel(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    runner = ModelRunner.load(str(tmp_path), "embed", device="cpu")
    text = runner.encode(["a photo of a cat"], {})
    longer = runner.encode(["The quick brown fox jumps over the lazy dog, and again."], {})
    [[alone]] = runner.run(runner.prepare([(text, {})]))
    [[batched], _] = runner.run(runner.prepare([(text, {}), (longer, {})]))
    assert batched == pytest.approx(alone, abs=1e-5)
    # and it is the reference's: the text padded to the full 64 positions, no mask
    ids = torch.tensor([text.token_ids[0] + [runner.head.pad_id] * (64 - len(text.token_ids[0]))])
    with torch.inference_mode():
        out = runner.model.get_text_features(input_ids=ids)
    features = out if isinstance(out, torch.Tensor) else out.pooler_output  # by version
    reference = torch.nn.functional.normalize(features, dim=-1)[0].tolist()
    assert alone == pytest.approx(reference, abs=1e-5)


def test_a_classify_model_without_its_trained_classifier_is_refused(
    tiny_embed_model: Path, tiny_classify_model: Path
) -> None:
    """An embedding checkpoint loaded for classify: transformers made the classifier up (random
    weights, a warning on stderr) and every request got a random label. Refused instead,
    naming what the checkpoint lacks; a real classification checkpoint still loads, and an
    embedding model (no head of its own to miss) loads for embed."""
    with pytest.raises(ValueError, match=r"classifier\.weight.*missing from it"):
        ModelRunner.load(str(tiny_embed_model), "classify", device="cpu")
    assert ModelRunner.load(str(tiny_classify_model), "classify", device="cpu").task == "classify"
    assert ModelRunner.load(str(tiny_embed_model), "embed", device="cpu").task == "embed"
