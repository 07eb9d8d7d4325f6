"""`ModelRunner`: one Hugging Face model for one task on one device, as the pipeline's model seam.

The work is split so a pipeline can overlap it: `encode` (tokenise one request, no padding,
validate it) and `prepare` (pad already-encoded ids into tensors) run on CPU threads while `run`
(the forward pass) holds the device. Tokenisation happens exactly once per request.

`run` answers every request of a batch, with an output or a `ModelFailure`:
- out of device memory: the batch is halved and retried, down to one request ("OutOfMemory");
- the forward fails for another reason: the batch is retried request by request, so only the one
  that breaks it fails ("ModelError", redelivered);
- the device itself fails (a CUDA error): every request of the batch fails at once
  ("DeviceError") and nothing is retried, since after a sticky CUDA error every forward fails and
  splitting would only fail each request alone. `probe` then tells a dead device from a request
  that breaks the model.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as transformers_logging

from worker.errors import RequestRejected
from worker.model.decode import DecodeSession, supports_sessions
from worker.model.device import (
    configure_threads,
    dtype_name,
    is_cuda,
    memory_reserved,
    resolve_device,
    resolve_dtype,
    synchronize,
)
from worker.model.generate_session import GenerateSession
from worker.model.heads import HEADS, Head, HeadInput
from worker.model.isolation import BatchOps, run_groups, run_items
from worker.model.params import validate_parameters
from worker.model.prepared import Group, Item, Prepared
from worker.model.tokenize import (
    TextEncoder,
    model_position_limit,
    resolve_input_limit,
    resolve_pad_id,
)
from worker.seams import Encoded, ModelFailure, Outputs
from worker.tasks import Task

if TYPE_CHECKING:
    from worker.seams import DeviceProbe, ModelSeam, ModelSession

log = logging.getLogger("worker.model")

#: how `generate` batches (WORKER_GENERATE_BATCHING)
GenerateBatching = Literal["continuous", "static"]


class ModelRunner:
    """One model for one task on one device. `encode` and `prepare` are thread-safe; `run` and
    `probe` are called from one model thread."""

    def __init__(
        self,
        *,
        name: str,
        task: Task,
        device: str,
        dtype: torch.dtype,
        model: PreTrainedModel,
        tokenizer: Any,
        max_input_tokens: int,
        position_limit: int | None,
        generate_batching: GenerateBatching = "continuous",
    ) -> None:
        self.name = name
        self.task: Task = task
        self.device = device
        self.torch_dtype = dtype
        self.dtype = dtype_name(dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self.head: Head = HEADS[task](model, tokenizer, resolve_pad_id(tokenizer))
        self.labels = self.head.labels
        self.text_encoder = TextEncoder(
            tokenizer,
            max_input_tokens=max_input_tokens,
            position_limit=position_limit,
            chat_template=self.head.chat_template,
        )
        self.continuous = False
        self.use_generate_batching(generate_batching)

    def use_generate_batching(self, batching: GenerateBatching) -> None:
        """`continuous`: generate runs in decode sessions (rows leave and join between steps),
        where the model's cache allows it; `static`: generate() per batch."""
        if batching not in ("continuous", "static"):
            raise ValueError(f"generate_batching must be continuous or static, not {batching!r}")
        #: whether `generate` runs in decode sessions
        self.continuous = (
            self.task == "generate" and batching == "continuous" and supports_sessions(self.model)
        )
        if self.task == "generate" and batching == "continuous" and not self.continuous:
            log.warning(
                "continuous batching needs a plain key/value cache; this model's has "
                "sliding-window or recurrent layers: generate batches statically",
                extra={"model": self.name, "model_type": self.model.config.model_type},
            )

    @classmethod
    def load(
        cls, model: str, task: Task, device: str = "auto", dtype: str = "auto",
        max_input_tokens: int = 0, generate_batching: GenerateBatching = "continuous",
    ) -> ModelRunner:
        """Load tokenizer + model from a local folder or a Hugging Face id (offline honoured)."""
        if task not in HEADS:
            raise ValueError(
                f"task must be one of {', '.join(HEADS)}, not {task!r} (image tasks: "
                "worker.model.image_runner.ImageModelRunner)"
            )
        if max_input_tokens < 0:
            raise ValueError(f"max_input_tokens must be >= 0, not {max_input_tokens}")
        resolved_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, resolved_device)
        threads = configure_threads(resolved_device)

        transformers_logging.disable_progress_bar()  # a worker logs JSON lines, not progress bars
        tokenizer = AutoTokenizer.from_pretrained(model)
        config = AutoConfig.from_pretrained(model)
        hf_model = HEADS[task].load_model(model, config, torch_dtype, resolved_device)
        position_limit = model_position_limit(config)
        limit = resolve_input_limit(tokenizer, position_limit, Path(model), max_input_tokens)
        runner = cls(
            name=model, task=task, device=resolved_device, dtype=torch_dtype, model=hf_model,
            tokenizer=tokenizer, max_input_tokens=limit, position_limit=position_limit,
            generate_batching=generate_batching,
        )
        facts: dict[str, object] = {"model": model, "task": task, "device": resolved_device}
        facts.update(dtype=runner.dtype, max_input_tokens=limit, torch_threads=threads)
        log.info("model loaded", extra=facts)
        return runner

    # ---------------------------------------------------------------- CPU side, thread-safe

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        """Tokenise one request (no padding). Raises InvalidParameters, InputTooLong or another
        RequestRejected (all ValueErrors)."""
        validate_parameters(self.task, parameters)
        return self.text_encoder.encode(texts, self.head.reserved_positions(parameters))

    def encode_many(
        self, requests: Sequence[tuple[list[str], Mapping[str, Any]]]
    ) -> list[Encoded | RequestRejected]:
        """`encode` for several requests in one tokenizer call; a request's refusal is returned
        in its place (satisfies worker.seams.BatchEncoder)."""
        out: list[Encoded | RequestRejected | None] = []
        valid: list[tuple[list[str], int]] = []
        for texts, parameters in requests:
            try:
                validate_parameters(self.task, parameters)
                valid.append((texts, self.head.reserved_positions(parameters)))
                out.append(None)
            except RequestRejected as exc:
                out.append(exc)
        encoded = iter(self.text_encoder.encode_many(valid))
        return [next(encoded) if slot is None else slot for slot in out]

    def prepare(self, items: Sequence[Item]) -> Prepared:
        """Pad already-encoded requests into tensors, one group per head group key (generate:
        per decoding options; the other tasks: one group)."""
        prepared = Prepared(items=list(items))
        buckets: dict[Hashable, list[int]] = {}
        for index, (_, params) in enumerate(prepared.items):
            buckets.setdefault(self.head.group_key(params), []).append(index)
        for key, indexes in buckets.items():
            group = self._collate([prepared.items[i] for i in indexes], indexes, key)
            prepared.groups.append(group)
            prepared.real_tokens += sum(prepared.items[i][0].n_tokens for i in indexes)
            prepared.padded_tokens += group.input_ids.numel()
        return prepared

    def _collate(self, items: Sequence[Item], indexes: list[int], key: Hashable) -> Group:
        seqs = [seq for enc, _ in items for seq in enc.token_ids]
        width = max(len(s) for s in seqs)
        fixed = self.head.fixed_width
        if fixed is not None:  # as trained: full length, padding attended
            width = max(width, fixed)
        input_ids, attention_mask = padded(
            seqs, width, self.head.pad_id, left=self.head.pad_left, attend_padding=fixed is not None
        )
        if is_cuda(self.device):
            # Pinned host memory lets the forward copy asynchronously.
            input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
        return Group(indexes, input_ids, attention_mask, key)

    # ---------------------------------------------------------------- device side

    def open_session(self) -> GenerateSession | None:
        """A continuous-batching session, or None where this runner batches statically (not
        generate, WORKER_GENERATE_BATCHING=static, or a cache a session cannot merge)."""
        if not self.continuous:
            return None
        return self.session_over(
            DecodeSession(self.model, self.tokenizer, self.head.pad_id, self.device)
        )

    def session_over(self, decode: DecodeSession) -> GenerateSession:
        """A session over this decode state (tests hand one a clock), answering what fails
        through this runner's static path."""
        return GenerateSession(
            decode,
            group_key=self.head.group_key,
            run_static=lambda items: self._run_items(items, None),
            device=self.device,
        )

    def run(self, prepared: Prepared) -> list[Outputs | ModelFailure]:
        """One output (or ModelFailure) per item, in order."""
        session = self.open_session()
        if session is not None:
            return self._run_session(session, prepared)
        return self.run_static(prepared)

    def _run_session(
        self, session: GenerateSession, prepared: Prepared
    ) -> list[Outputs | ModelFailure]:
        results: dict[int, Outputs | ModelFailure] = dict(
            session.add(prepared, range(len(prepared.items)))
        )
        while session.active:
            results.update(session.step())
        return [results[i] for i in range(len(prepared.items))]

    def run_static(self, prepared: Prepared) -> list[Outputs | ModelFailure]:
        """`run` with every group a whole: generate() over the group, done when its longest
        sequence is (WORKER_GENERATE_BATCHING=static, and every task but generate)."""
        groups = [(group.item_indexes, group) for group in prepared.groups]
        return run_groups(prepared.items, groups, self._ops)

    def _run_items(self, items: list[Item], group: Group | None) -> list[Outputs | ModelFailure]:
        return run_items(items, group, self._ops)

    @property
    def _ops(self) -> BatchOps[Item, Group]:
        return BatchOps(
            collate=lambda items: self._collate(
                items, list(range(len(items))), self.head.group_key(items[0][1])
            ),
            forward=self._forward,
            rows=lambda item: len(item[0].token_ids),
            too_large_alone=lambda item: (
                f"out of device memory for one request ({len(item[0].token_ids)} inputs, "
                f"{item[0].n_tokens} tokens) even alone"
            ),
            device=self.device,
        )

    def _forward(self, group: Group, items: Sequence[Item]) -> list[Any]:
        non_blocking = is_cuda(self.device)
        batch = HeadInput(
            input_ids=group.input_ids.to(self.device, non_blocking=non_blocking),
            attention_mask=group.attention_mask.to(self.device, non_blocking=non_blocking),
            params=[params for enc, params in items for _ in enc.token_ids],
            key=group.key,
        )
        return self.head.forward(batch)

    # ---------------------------------------------------------------- lifecycle

    def _one_input_batch(self, text: str) -> Prepared:
        params = self.head.smallest_params
        return self.prepare([(self.encode([text], params), params)])

    def warm_up(self) -> None:
        """One tiny batch end to end, so the first real batch does not pay for lazy init."""
        outputs = self.run(self._one_input_batch("warm up"))
        if isinstance(outputs[0], ModelFailure):
            raise RuntimeError(f"warm-up failed: {outputs[0].type}: {outputs[0].message}")
        synchronize(self.device)

    def probe(self) -> bool:
        """A one-input forward, as warm_up: True when the device computed it. Asked after a batch
        in which every request failed, it tells a poison request (True) from a dead device."""
        try:
            prepared = self._one_input_batch("probe")
            with torch.inference_mode():
                self._forward(prepared.groups[0], prepared.items)
            synchronize(self.device)  # a CUDA fault surfaces at the sync, if not before
        except Exception:
            log.error("device probe failed", exc_info=True)
            return False
        return True

    def cuda_memory_bytes(self) -> int | None:
        """Device memory the process holds through torch's caching allocator; None on CPU."""
        return memory_reserved(self.device)


if TYPE_CHECKING:

    def _satisfies_the_seams(
        runner: ModelRunner, session: GenerateSession
    ) -> tuple[ModelSeam[Encoded, Prepared], DeviceProbe, ModelSession]:
        return runner, runner, session  # mypy checks them against the pipeline's protocols


def padded(
    seqs: Sequence[Sequence[int]], width: int, pad: int, *, left: bool, attend_padding: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """`seqs` padded to `width` with `pad` (before them when `left`), and the attention mask:
    1 on tokens, 0 on padding (1 everywhere when `attend_padding`).

    Filled by one masked copy of the flat token ids rather than from padded nested lists:
    torch.tensor walks a nested list element by element (2.5 ms for 512 rows of ~25 tokens,
    here 0.3 ms), and with sixteen inputs per message that was a tenth of the pipeline's CPU.
    """
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    positions = torch.arange(width, dtype=torch.long)
    tokens = positions >= (width - lengths)[:, None] if left else positions < lengths[:, None]
    count = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=count)
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    input_ids[tokens] = torch.from_numpy(flat)
    mask = torch.ones_like(input_ids) if attend_padding else tokens.to(torch.long)
    return input_ids, mask
