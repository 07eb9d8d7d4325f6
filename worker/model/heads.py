"""One head per task: which transformers class loads the model, which side padding goes on,
which requests may share a forward, and the forward itself over one padded group -> one
JSON-able value per sequence.

A new task is a new `Head` subclass listed in `HEADS` (and its parameter validator in
`worker.model.params.VALIDATORS`); the runner does not know the tasks by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import transformers
from packaging.version import Version
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    StoppingCriteriaList,
)

from worker.model.decode import StopStrings, eos_ids, special_stop_ids
from worker.model.params import GenerateOptions, cut_at_stop, parse_generate_options
from worker.model.tokenize import model_position_limit
from worker.model.vectors import NON_FINITE, pooled_features, unit_rows
from worker.tasks import Task

# from_pretrained's keyword for the weights' dtype: `dtype` since transformers 4.56, before that
# `torch_dtype` (which newer versions still take, with a deprecation warning). The GPU machines
# bring their own transformers, so both must work.
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load_eval_model(
    auto_model: Any,
    path: str,
    config: Any,
    dtype: torch.dtype,
    device: str,
    *,
    trained_head: bool = False,
) -> PreTrainedModel:
    """A model by its Auto class from a folder (or hub id), on `device`, in eval mode (every
    head, text or image, loads this way).

    `trained_head`: every weight must come from the checkpoint. transformers fills what it lacks
    with random values and only warns: a classify worker given an embedding model (MiniLM has no
    `classifier.weight`) answered every request with a random label. ValueError instead, naming
    what is missing (the CLI turns it into one WORKER_MODEL line).
    """
    model, info = auto_model.from_pretrained(
        path, config=config, output_loading_info=True, **{_DTYPE_KWARG: dtype}
    )
    missing = sorted(info.get("missing_keys") or ())
    if trained_head and missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        raise ValueError(
            f"not a trained {auto_model.__name__} checkpoint: {shown} missing from it (they "
            "would be random)"
        )
    model.to(device)
    model.eval()
    return model


@dataclass
class HeadInput:
    """One padded group on the device, with each sequence's request parameters."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    params: list[Mapping[str, Any]]  # one per sequence: its request's parameters
    key: Hashable  # the group's `Head.group_key`


class Head(ABC):
    """How one task turns a model's forward into answers."""

    task: ClassVar[Task]
    auto_model: ClassVar[Any]  # the transformers Auto class that loads this task's model
    pad_left: ClassVar[bool] = False
    #: the task's output layer must come from the checkpoint (see `load_eval_model`)
    trained_head: ClassVar[bool] = False
    chat_template: ClassVar[bool] = False  # wrap each input in the tokenizer's chat template
    #: the cheapest valid parameters: warm-up and the device probe run one input with them
    smallest_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, model: PreTrainedModel, tokenizer: Any, pad_id: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.labels: list[str] = []
        #: every row padded to this width, its padding attended (None: to the batch's longest,
        #: padding masked out)
        self.fixed_width: int | None = None

    @classmethod
    def load_model(
        cls, path: str, config: Any, dtype: torch.dtype, device: str
    ) -> PreTrainedModel:
        """This task's model from a folder (or hub id), on `device`, in eval mode."""
        return load_eval_model(
            cls.auto_model, path, config, dtype, device, trained_head=cls.trained_head
        )

    def group_key(self, params: Mapping[str, Any]) -> Hashable:
        """Requests with equal keys share one forward (generate: the same decoding options)."""
        return None

    def reserved_positions(self, params: Mapping[str, Any]) -> int:
        """Positions the output takes beyond the input (generate: max_new_tokens)."""
        return 0

    @abstractmethod
    def forward(self, batch: HeadInput) -> list[Any]:
        """One value per sequence (or NON_FINITE), under torch.inference_mode."""


class EmbedHead(Head):
    """Mean pooling over the attention mask, then L2 normalisation unless `normalize` is false:
    what sentence-transformers does for sentence-embedding models such as all-MiniLM-L6-v2."""

    task = "embed"
    auto_model = AutoModel

    def __init__(self, model: PreTrainedModel, tokenizer: Any, pad_id: int) -> None:
        super().__init__(model, tokenizer, pad_id)
        config = getattr(model.config, "text_config", None) or model.config
        if str(getattr(config, "model_type", "")).startswith("siglip"):
            # SigLIP's text tower pools the last position and was trained on text padded to
            # its full length with no mask: padded to the batch's longest, a text's vector
            # changed with its neighbours (cosine 0.73 alone vs beside a longer one)
            self.fixed_width = model_position_limit(config)

    def forward(self, batch: HeadInput) -> list[Any]:
        text_features = getattr(self.model, "get_text_features", None)
        if text_features is not None:  # CLIP / SigLIP: the text tower (image-embed: the other)
            out = text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            return unit_rows(pooled_features(out), batch.params)
        hidden = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)[0]
        # pooled in float32: a half-precision sum over 256 positions loses digits
        mask = batch.attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (hidden.to(torch.float32) * mask).sum(dim=1)
        return unit_rows(summed / mask.sum(dim=1).clamp(min=1e-9), batch.params)


class ClassifyHead(Head):
    """Softmax over the sequence-classification logits -> {"label", "score"} of the top class."""

    task = "classify"
    auto_model = AutoModelForSequenceClassification
    trained_head = True

    def __init__(self, model: PreTrainedModel, tokenizer: Any, pad_id: int) -> None:
        # decoder classifiers (GPT-2, Llama, ...) classify each row's last token that is not
        # config.pad_token_id: padding must be that id, and there must be one (GPT-2 has none)
        configured = getattr(model.config, "pad_token_id", None)
        if isinstance(configured, int):
            pad_id = configured
        else:
            model.config.pad_token_id = pad_id
        super().__init__(model, tokenizer, pad_id)
        id2label = getattr(model.config, "id2label", None) or {}
        n = int(getattr(model.config, "num_labels", len(id2label)))
        self.labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(n)]

    def forward(self, batch: HeadInput) -> list[Any]:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logits = logits.to(torch.float32)
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        scores, labels = torch.softmax(logits, dim=-1).max(dim=-1)
        return [
            {"label": self.labels[int(label)], "score": float(score)} if ok else NON_FINITE
            for score, label, ok in zip(scores.tolist(), labels.tolist(), finite, strict=True)
        ]


class GenerateHead(Head):
    """generate() with the group's decoding options -> the continuation text only."""

    task = "generate"
    auto_model = AutoModelForCausalLM
    pad_left = True  # a decoder continues from the last position: padding goes before the prompt
    chat_template = True
    smallest_params: ClassVar[Mapping[str, Any]] = {"max_new_tokens": 1}

    def group_key(self, params: Mapping[str, Any]) -> Hashable:
        return parse_generate_options(params)

    def reserved_positions(self, params: Mapping[str, Any]) -> int:
        return parse_generate_options(params).max_new_tokens

    def forward(self, batch: HeadInput) -> list[Any]:
        options = batch.key
        assert isinstance(options, GenerateOptions)
        kwargs = options.generate_kwargs()
        if options.stop:  # each row ends at its stop string, as in a decode session
            stop = StopStrings(self._text, options.stop)
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
            named = special_stop_ids(self.tokenizer, options.stop)
            if named:  # a special token named as a stop ends the row as its EOS does
                kwargs["eos_token_id"] = sorted(eos_ids(self.model) | named)
        generated = self.model.generate(  # type: ignore[operator]
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            pad_token_id=self.pad_id,
            **kwargs,
        )
        continuation = generated[:, batch.input_ids.shape[1] :].cpu()
        texts = [self._text(row) for row in continuation]
        if options.stop:  # the text ends before the stop (the rows that stopped hold it)
            texts = [cut_at_stop(text, options.stop)[0] for text in texts]
        return texts

    def _text(self, ids: Any) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


HEADS: dict[Task, type[Head]] = {
    head.task: head for head in (EmbedHead, ClassifyHead, GenerateHead)
}


def head_for(task: Task) -> type[Head]:
    return HEADS[task]


