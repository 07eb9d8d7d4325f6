"""`ImageModelRunner`: one vision model for one image task, as the pipeline's model seam.

Images are "encoded" where text is tokenised: `encode_many` (on the encoder threads) has the
loader fetch, decode and preprocess (the checkpoint's AutoImageProcessor: resize, crop,
normalise) every image of a receive's requests concurrently on its thread pool, so `run` on the
model thread finds pixel_values ready. Preprocessed images are fixed-size tensors: a batch is by
count (WORKER_MAX_BATCH_IMAGES), with no padding. `run` fails as `ModelRunner.run` does: out of
memory, the batch is halved down to one request ("OutOfMemory"); another failure, the batch is
retried request by request ("ModelError"); a device fault fails the batch ("DeviceError").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, PreTrainedModel
from transformers.utils import logging as transformers_logging

from worker.contract.images import ImageRef
from worker.errors import ImageRejected, RequestRejected
from worker.images.loader import ImageLoader
from worker.model.device import (
    configure_threads,
    dtype_name,
    is_cuda,
    memory_reserved,
    resolve_device,
    resolve_dtype,
    synchronize,
)
from worker.model.image_heads import IMAGE_HEADS, ImageHead
from worker.model.isolation import BatchOps, run_groups
from worker.model.params import validate_parameters
from worker.seams import ModelFailure, Outputs
from worker.tasks import IMAGE_TASKS, Task

if TYPE_CHECKING:
    from worker.seams import DeviceProbe, ModelSeam

log = logging.getLogger("worker.model")


@dataclass(frozen=True)
class ImageEncoded:
    """One request's images preprocessed: pixel_values (n, channels, height, width), on CPU."""

    pixel_values: torch.Tensor

    @property
    def rows(self) -> int:
        return int(self.pixel_values.shape[0])

    @property
    def length(self) -> int:
        return 1  # every image costs the same: batches are by count

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixel_values.shape[1:])


ImageItem = tuple[ImageEncoded, Mapping[str, Any]]


@dataclass
class ImageGroup:
    item_indexes: list[int]
    pixel_values: torch.Tensor


@dataclass
class ImagePrepared:
    items: list[ImageItem]
    groups: list[ImageGroup] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.items)

    @property
    def real_tokens(self) -> int:  # images: the padding metrics read 1.0
        return sum(enc.rows for enc, _ in self.items)

    @property
    def padded_tokens(self) -> int:
        return self.real_tokens


class _DeviceFault(Exception):
    pass


class ImageModelRunner:
    """`encode_many` and `prepare` are thread-safe; `run` and `probe` run on the model thread."""

    def __init__(
        self,
        *,
        name: str,
        task: Task,
        device: str,
        dtype: torch.dtype,
        model: PreTrainedModel,
        processor: Any,
        loader: ImageLoader,
        max_images: int = 64,
    ) -> None:
        if task not in IMAGE_TASKS:
            raise ValueError(f"not an image task: {task!r}")
        self.name = name
        self.task: Task = task
        self.device = device
        self.torch_dtype = dtype
        self.dtype = dtype_name(dtype)
        self.model = model
        self.processor = processor
        self.loader = loader
        self.max_images = max_images
        self.max_input_tokens = 0  # no tokens: the CLI's start-up log reads it
        self.head: ImageHead = IMAGE_HEADS[task](model)
        self.labels = self.head.labels

    @classmethod
    def load(
        cls, model: str, task: Task, loader: ImageLoader, *, device: str = "auto",
        dtype: str = "auto", max_images: int = 64,
    ) -> ImageModelRunner:
        if task not in IMAGE_TASKS:
            raise ValueError(f"task must be one of {', '.join(sorted(IMAGE_TASKS))}, not {task!r}")
        resolved = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, resolved)
        threads = configure_threads(resolved)
        transformers_logging.disable_progress_bar()
        processor = AutoImageProcessor.from_pretrained(model)
        config = AutoConfig.from_pretrained(model)
        hf_model = IMAGE_HEADS[task].load_model(model, config, torch_dtype, resolved)
        runner = cls(
            name=model, task=task, device=resolved, dtype=torch_dtype, model=hf_model,
            processor=processor, loader=loader, max_images=max_images,
        )
        log.info(
            "model loaded",
            extra={"model": model, "task": task, "device": resolved, "dtype": runner.dtype,
                   "processor": type(processor).__name__, "torch_threads": threads},
        )
        return runner

    # ---------------------------------------------------------------- CPU side, thread-safe

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One decoded image -> pixel_values (1, channels, height, width): the processor's."""
        out = self.processor(images=[image], return_tensors="pt")
        return torch.as_tensor(out["pixel_values"])

    def _check(self, inputs: Sequence[Any], parameters: Mapping[str, Any]) -> list[ImageRef]:
        validate_parameters(self.task, parameters)
        refs = list(inputs)
        if not all(isinstance(ref, ImageRef) for ref in refs):
            raise RequestRejected("image tasks take image inputs")
        if len(refs) > self.max_images:
            raise ImageRejected(
                "ImageTooLarge",
                f"{len(refs)} images in one request; at most {self.max_images} "
                "(WORKER_IMAGE_MAX_PER_REQUEST)",
            )
        return refs

    def encode(self, inputs: list[Any], parameters: Mapping[str, Any]) -> ImageEncoded:
        out = self.encode_many([(inputs, parameters)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def encode_many(
        self, requests: Sequence[tuple[list[Any], Mapping[str, Any]]]
    ) -> list[ImageEncoded | Exception]:
        """Every image of these requests fetched, decoded and preprocessed concurrently on the
        loader's pool; a request's refusal in its place."""
        out: list[ImageEncoded | Exception | None] = []
        valid: list[list[ImageRef]] = []
        for inputs, parameters in requests:
            try:
                valid.append(self._check(inputs, parameters))
                out.append(None)
            except RequestRejected as exc:
                out.append(exc)
        loaded = iter(self.loader.load_many(valid, transform=self.preprocess))
        result: list[ImageEncoded | Exception] = []
        for slot in out:
            if slot is not None:
                result.append(slot)
                continue
            tensors = next(loaded)
            if isinstance(tensors, Exception):
                result.append(tensors)
            else:
                result.append(ImageEncoded(torch.cat(tensors, dim=0)))
        return result

    def prepare(self, items: Sequence[ImageItem]) -> ImagePrepared:
        """One tensor per image shape (a fixed-size processor makes one group)."""
        prepared = ImagePrepared(items=list(items))
        buckets: dict[tuple[int, ...], list[int]] = {}
        for index, (enc, _) in enumerate(prepared.items):
            buckets.setdefault(enc.shape, []).append(index)
        for indexes in buckets.values():
            prepared.groups.append(self._collate([prepared.items[i] for i in indexes], indexes))
        return prepared

    def _collate(self, items: Sequence[ImageItem], indexes: list[int]) -> ImageGroup:
        pixels = torch.cat([enc.pixel_values for enc, _ in items], dim=0)
        if is_cuda(self.device):
            pixels = pixels.pin_memory()
        return ImageGroup(indexes, pixels)

    # ---------------------------------------------------------------- device side

    def run(self, prepared: ImagePrepared) -> list[Outputs | ModelFailure]:
        groups = [(group.item_indexes, group) for group in prepared.groups]
        return run_groups(prepared.items, groups, self._ops)

    @property
    def _ops(self) -> BatchOps[ImageItem, ImageGroup]:
        return BatchOps(
            collate=lambda items: self._collate(items, list(range(len(items)))),
            forward=self._forward,
            rows=lambda item: item[0].rows,
            too_large_alone=lambda item: f"out of device memory for {item[0].rows} images alone",
            device=self.device,
        )

    def _forward(self, group: ImageGroup, items: Sequence[ImageItem]) -> list[Any]:
        pixels = group.pixel_values.to(
            self.device, dtype=self.torch_dtype, non_blocking=is_cuda(self.device)
        )
        params = [params for enc, params in items for _ in range(enc.rows)]
        return self.head.forward(pixels, params)

    # ---------------------------------------------------------------- lifecycle

    def _one_image_batch(self) -> ImagePrepared:
        image = Image.new("RGB", (64, 64), (127, 127, 127))
        return self.prepare([(ImageEncoded(self.preprocess(image)), {})])

    def warm_up(self) -> None:
        outputs = self.run(self._one_image_batch())
        if isinstance(outputs[0], ModelFailure):
            raise RuntimeError(f"warm-up failed: {outputs[0].type}: {outputs[0].message}")
        synchronize(self.device)

    def probe(self) -> bool:
        try:
            prepared = self._one_image_batch()
            with torch.inference_mode():
                self._forward(prepared.groups[0], prepared.items)
            synchronize(self.device)
        except Exception:
            log.error("device probe failed", exc_info=True)
            return False
        return True

    def cuda_memory_bytes(self) -> int | None:
        return memory_reserved(self.device)

    def close(self) -> None:
        self.loader.close()


if TYPE_CHECKING:

    def _satisfies_the_seams(
        runner: ImageModelRunner,
    ) -> tuple[ModelSeam[ImageEncoded, ImagePrepared], DeviceProbe]:
        return runner, runner
