"""The image tasks' heads: which transformers class loads the model, and the forward over one
batch of preprocessed images (pixel_values) -> one JSON-able value per image.

    image-embed     CLIP / SigLIP: the image tower's projected features (get_image_features);
                    ViT / DINOv2 and other vision backbones: the pooled output (pooler_output,
                    else the first token); L2-normalised unless `normalize` is false, rounded
                    as `embed`'s vectors are
    image-classify  any AutoModelForImageClassification: softmax; {"label", "score"} of the top
                    class, or with `top_k` the k best, best first
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from transformers import AutoModel, AutoModelForImageClassification, PreTrainedModel

from worker.model.heads import load_eval_model
from worker.model.params import image_classify_top_k
from worker.model.vectors import NON_FINITE, pooled_features, unit_rows
from worker.tasks import Task


class ImageHead(ABC):
    task: ClassVar[Task]
    auto_model: ClassVar[Any]
    #: the task's output layer must come from the checkpoint (see `load_eval_model`)
    trained_head: ClassVar[bool] = False

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.labels: list[str] = []

    @classmethod
    def load_model(
        cls, path: str, config: Any, dtype: torch.dtype, device: str
    ) -> PreTrainedModel:
        return load_eval_model(
            cls.auto_model, path, config, dtype, device, trained_head=cls.trained_head
        )

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """One value per image (or NON_FINITE), under torch.inference_mode."""


class ImageEmbedHead(ImageHead):
    task = "image-embed"
    auto_model = AutoModel

    def forward(self, pixel_values: torch.Tensor, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        image_features = getattr(self.model, "get_image_features", None)
        if image_features is not None:  # CLIP, SigLIP: the image tower, projected
            pooled = pooled_features(image_features(pixel_values=pixel_values))
        else:
            pooled = pooled_features(self.model(pixel_values=pixel_values))
        return unit_rows(pooled, params)


class ImageClassifyHead(ImageHead):
    task = "image-classify"
    auto_model = AutoModelForImageClassification
    trained_head = True

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__(model)
        id2label = getattr(model.config, "id2label", None) or {}
        n = int(getattr(model.config, "num_labels", len(id2label)))
        self.labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(n)]

    def forward(self, pixel_values: torch.Tensor, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        logits = self.model(pixel_values=pixel_values).logits.to(torch.float32)
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        probabilities = torch.softmax(logits, dim=-1).cpu()
        wanted = [image_classify_top_k(p) for p in params]
        k = min(max((w or 1) for w in wanted), probabilities.shape[-1])
        scores, indexes = probabilities.topk(k, dim=-1)
        out: list[Any] = []
        for row_scores, row_labels, top_k, ok in zip(
            scores.tolist(), indexes.tolist(), wanted, finite, strict=True
        ):
            if not ok:
                out.append(NON_FINITE)
                continue
            best = [
                {"label": self.labels[int(label)], "score": float(score)}
                for score, label in zip(row_scores, row_labels, strict=True)
            ]
            out.append(best[0] if top_k is None else best[:top_k])
        return out


IMAGE_HEADS: dict[Task, type[ImageHead]] = {
    head.task: head for head in (ImageEmbedHead, ImageClassifyHead)
}
