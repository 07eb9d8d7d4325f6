"""The model adapter: the only module in the project that imports torch and transformers.

One `ModelRunner` wraps one Hugging Face model for one task:

- ``embed``: mean pooling over the attention mask, then L2 normalisation (what sentence-transformers
  does for sentence-embedding models such as all-MiniLM-L6-v2) -> one vector per input.
- ``classify``: softmax over the sequence-classification logits -> ``{"label", "score"}`` per input.
- ``generate``: the tokenizer's chat template (where it has one) around each input, greedy or
  sampled decoding with ``max_new_tokens`` etc. from the request's parameters -> the continuation
  text only.

The work is split so a pipeline can overlap it: ``encode`` (tokenise one request, no padding,
validate it) and ``prepare`` (pad already-encoded ids into tensors) run on CPU threads while
``run`` (the forward pass) holds the device. Tokenisation happens exactly once per request.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

# OpenMP worker threads that spin while idle steal the CPU from everything else in the process
# (tokenising, JSON, SQS calls) and from neighbours. With the cores shared, spinning made a batched
# forward up to 5x slower; on idle cores the two policies are equal (bench/omp_wait_policy.py).
# Must be set before torch (libgomp) loads; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers.utils import logging as transformers_logging

from worker.errors import InputTooLong
from worker.seams import Encoded, ModelFailure

log = logging.getLogger(__name__)

from worker.tasks import TASKS, Task  # noqa: E402

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}

# Tokenizers without a real limit report a huge sentinel (int(1e30)) as model_max_length.
_NO_LIMIT = 1_000_000

# Generation parameters a request may set, with their defaults.
DEFAULT_MAX_NEW_TOKENS = 64
MAX_NEW_TOKENS_CAP = 4096
_GENERATE_PARAMS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
)
_EMBED_PARAMS = ("normalize",)
EMBED_DECIMALS = 9  # decimal places kept in embedding vectors (see ModelRunner._finish)


@dataclass(frozen=True)
class GenerateOptions:
    """Validated generation parameters; hashable, so equal requests share one generate() call."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            # Explicit neutral values so a model's generation_config cannot switch sampling on.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass
class _Group:
    """Sequences of one or more items padded into one tensor pair (CPU, maybe pinned)."""

    item_indexes: list[int]  # positions in Prepared.items
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    options: GenerateOptions | None = None


@dataclass
class Prepared:
    """A collated, padded batch ready for the device. Built by `ModelRunner.prepare`."""

    items: list[tuple[Encoded, Mapping[str, Any]]]
    groups: list[_Group] = field(default_factory=list)
    real_tokens: int = 0
    padded_tokens: int = 0

    @property
    def size(self) -> int:
        """Number of requests (items) in the batch."""
        return len(self.items)

    @property
    def n_sequences(self) -> int:
        return sum(len(enc.token_ids) for enc, _ in self.items)


# --------------------------------------------------------------------------------------------
# Device, dtype and threads


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu. An explicit cuda without a GPU is an error."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return device
    raise ValueError(f"device must be auto, cuda, cuda:N or cpu, not {device!r}")


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto` = bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU."""
    dtype = (dtype or "auto").strip().lower()
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be auto, float16, bfloat16 or float32, not {dtype!r}")
    return _DTYPES[dtype]


def available_cpus() -> int:
    """CPUs this process may really use: affinity, capped by a cgroup CPU quota (Kubernetes limits).

    os.cpu_count() reports the node's cores; a pod limited to 4 CPUs on a 64-core node would
    otherwise start 64 intra-op threads and spend its quota on contention.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "400000 100000"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def configure_threads(device: str) -> int:
    """Pin torch's intra-op threads to the CPUs we may use, unless the user set OMP_NUM_THREADS."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = available_cpus()
    if device.startswith("cuda"):
        # On a GPU the CPU only feeds the device; a few threads suffice and leave cores to I/O.
        n = min(n, 4)
    torch.set_num_threads(n)
    return n


# --------------------------------------------------------------------------------------------
# Parameter validation (pure)


def _check_keys(params: Mapping[str, Any], allowed: Sequence[str], task: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"unknown parameter(s) for task {task!r}: {', '.join(unknown)} "
            f"(allowed: {allowed_text})"
        )


def _int_param(params: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"parameter {name!r} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"parameter {name!r} must be between {lo} and {hi}, not {value}")
    return value


def _float_param(
    params: Mapping[str, Any], name: str, default: float, lo: float, hi: float, lo_open: bool
) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"parameter {name!r} must be a number, not {value!r}")
    if value > hi or value < lo or (lo_open and value == lo):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(f"parameter {name!r} must be {bound} and <= {hi}, not {value}")
    return float(value)


def _bool_param(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"parameter {name!r} must be true or false, not {value!r}")
    return value


def parse_generate_options(params: Mapping[str, Any]) -> GenerateOptions:
    """Validate a generate request's parameters; a bad value raises a ValueError naming it."""
    _check_keys(params, _GENERATE_PARAMS, "generate")
    temperature = _float_param(params, "temperature", 1.0, 0.0, 100.0, lo_open=False)
    do_sample_default = "temperature" in params and temperature > 0.0
    do_sample = _bool_param(params, "do_sample", do_sample_default)
    if do_sample and temperature == 0.0:
        raise ValueError("parameter 'temperature' must be > 0 when do_sample is true")
    return GenerateOptions(
        max_new_tokens=_int_param(
            params, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS, 1, MAX_NEW_TOKENS_CAP
        ),
        do_sample=do_sample,
        temperature=temperature,
        top_p=_float_param(params, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=_int_param(params, "top_k", 0, 0, 1_000_000),
        repetition_penalty=_float_param(params, "repetition_penalty", 1.0, 0.0, 100.0, True),
    )


def validate_parameters(task: Task, params: Mapping[str, Any]) -> None:
    if not isinstance(params, Mapping):
        raise ValueError(f"parameters must be an object, not {type(params).__name__}")
    if task == "embed":
        _check_keys(params, _EMBED_PARAMS, task)
        _bool_param(params, "normalize", True)
    elif task == "classify":
        _check_keys(params, (), task)
    else:
        parse_generate_options(params)


# --------------------------------------------------------------------------------------------
# The runner


def _model_position_limit(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _sentence_transformers_max_seq_length(model_dir: Path) -> int | None:
    """The max_seq_length a sentence-transformers model folder declares (its trained length)."""
    try:
        import json

        data = json.loads((model_dir / "sentence_bert_config.json").read_text())
        value = data.get("max_seq_length")
        return int(value) if isinstance(value, int) and value > 0 else None
    except (OSError, ValueError):
        return None


_NON_FINITE = object()  # marks a sequence whose output held NaN/inf


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


class ModelRunner:
    """One model for one task on one device. `encode` and `prepare` are thread-safe."""

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
    ) -> None:
        self.name = name
        self.task: Task = task
        self.device = device
        self.torch_dtype = dtype
        self.dtype = _DTYPE_NAMES.get(dtype, str(dtype))
        self.model = model
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self._position_limit = position_limit
        self._pad_id = self._resolve_pad_id(tokenizer)
        # Decoder-only generation continues from the last position: pad on the left.
        self._pad_left = task == "generate"
        self._chat_template = task == "generate" and bool(getattr(tokenizer, "chat_template", None))
        self._backend = self._private_backend(tokenizer)
        self._tokenizer_lock = threading.Lock()
        if task == "classify":
            id2label = getattr(model.config, "id2label", None) or {}
            n = int(getattr(model.config, "num_labels", len(id2label)))
            self.labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(n)]
        else:
            self.labels = []

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        model: str,
        task: Task,
        device: str = "auto",
        dtype: str = "auto",
        max_input_tokens: int = 0,
    ) -> ModelRunner:
        """Load tokenizer + model from a local folder or a Hugging Face id (offline honoured)."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        if max_input_tokens < 0:
            raise ValueError(f"max_input_tokens must be >= 0, not {max_input_tokens}")
        resolved_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, resolved_device)
        threads = configure_threads(resolved_device)

        transformers_logging.disable_progress_bar()  # a worker logs JSON lines, not progress bars
        tokenizer = AutoTokenizer.from_pretrained(model)
        config = AutoConfig.from_pretrained(model)
        auto_cls = {
            "embed": AutoModel,
            "classify": AutoModelForSequenceClassification,
            "generate": AutoModelForCausalLM,
        }[task]
        hf_model = auto_cls.from_pretrained(model, config=config, dtype=torch_dtype)
        hf_model.to(resolved_device)
        hf_model.eval()

        position_limit = _model_position_limit(config)
        hard_limit = int(getattr(tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
        if hard_limit >= _NO_LIMIT:
            hard_limit = position_limit or _NO_LIMIT
        if position_limit is not None:
            hard_limit = min(hard_limit, position_limit)
        if max_input_tokens == 0:
            limit = hard_limit
            # A sentence-transformers folder declares the length it was trained for (256 for
            # all-MiniLM-L6-v2); sentence-transformers truncates there, we refuse beyond it.
            trained = _sentence_transformers_max_seq_length(Path(model))
            if trained is not None:
                limit = min(limit, trained)
        elif max_input_tokens > hard_limit:
            raise ValueError(
                f"max_input_tokens={max_input_tokens} exceeds the model's limit "
                f"of {hard_limit} tokens"
            )
        else:
            limit = max_input_tokens

        runner = cls(
            name=model,
            task=task,
            device=resolved_device,
            dtype=torch_dtype,
            model=hf_model,
            tokenizer=tokenizer,
            max_input_tokens=limit,
            position_limit=position_limit,
        )
        log.info(
            "model loaded",
            extra={
                "model": model,
                "task": task,
                "device": resolved_device,
                "dtype": runner.dtype,
                "max_input_tokens": limit,
                "torch_threads": threads,
            },
        )
        return runner

    @staticmethod
    def _resolve_pad_id(tokenizer: Any) -> int:
        for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
            value = getattr(tokenizer, attr, None)
            if isinstance(value, int):
                return value
        return 0

    @staticmethod
    def _private_backend(tokenizer: Any) -> Tokenizer | None:
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

    # ---------------------------------------------------------------- encode (CPU, thread-safe)

    def _tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        if self._backend is not None:
            encodings = self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)
            return [e.ids for e in encodings]
        with self._tokenizer_lock:
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

    def encode(self, texts: list[str], parameters: Mapping[str, Any]) -> Encoded:
        """Tokenise one request (no padding). Raises ValueError for bad parameters, InputTooLong."""
        validate_parameters(self.task, parameters)
        if not texts:
            raise ValueError("inputs must not be empty")
        if self._chat_template:
            prompts = [self.apply_chat_template(t) for t in texts]
            # The template already holds BOS and friends.
            ids = self._tokenize(prompts, add_special_tokens=False)
        else:
            ids = self._tokenize(texts, add_special_tokens=True)
        for index, seq in enumerate(ids):
            if len(seq) > self.max_input_tokens:
                raise InputTooLong(index, len(seq), self.max_input_tokens)
            if len(seq) == 0:
                raise ValueError(f"input {index} encodes to no tokens")
        if self.task == "generate" and self._position_limit is not None:
            new = parse_generate_options(parameters).max_new_tokens
            for index, seq in enumerate(ids):
                if len(seq) + new > self._position_limit:
                    raise InputTooLong(
                        index,
                        len(seq),
                        self._position_limit - new,
                        f"input {index} has {len(seq)} tokens; with max_new_tokens={new} the "
                        f"model's {self._position_limit} positions allow at most "
                        f"{self._position_limit - new} input tokens",
                    )
        return Encoded(ids)

    # ---------------------------------------------------------------- prepare (CPU, thread-safe)

    def _collate(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self._pad_id
        # Padded Python lists -> one tensor each: ~10x faster than filling rows tensor by tensor.
        if self._pad_left:
            rows = [[pad] * (width - len(s)) + s for s in seqs]
            masks = [[0] * (width - len(s)) + [1] * len(s) for s in seqs]
        else:
            rows = [s + [pad] * (width - len(s)) for s in seqs]
            masks = [[1] * len(s) + [0] * (width - len(s)) for s in seqs]
        input_ids = torch.tensor(rows, dtype=torch.long)
        attention_mask = torch.tensor(masks, dtype=torch.long)
        if self.device.startswith("cuda"):
            # Pinned host memory lets run() copy asynchronously.
            input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
        return input_ids, attention_mask

    def prepare(self, items: Sequence[tuple[Encoded, Mapping[str, Any]]]) -> Prepared:
        """Pad already-encoded requests into tensors. Generate groups requests by their options."""
        prepared = Prepared(items=list(items))
        if not prepared.items:
            return prepared
        buckets: dict[GenerateOptions | None, list[int]] = {}
        for index, (_, params) in enumerate(prepared.items):
            key = parse_generate_options(params) if self.task == "generate" else None
            buckets.setdefault(key, []).append(index)
        for options, indexes in buckets.items():
            seqs = [seq for i in indexes for seq in prepared.items[i][0].token_ids]
            input_ids, attention_mask = self._collate(seqs)
            prepared.groups.append(_Group(indexes, input_ids, attention_mask, options))
            prepared.real_tokens += sum(len(s) for s in seqs)
            prepared.padded_tokens += input_ids.numel()
        return prepared

    # ---------------------------------------------------------------- run (device)

    def run(self, prepared: Prepared) -> list[Any | ModelFailure]:
        """One output (or ModelFailure) per item, in order. Splits the batch on CUDA OOM."""
        results: list[Any | ModelFailure] = [None] * prepared.size
        for group in prepared.groups:
            items = [prepared.items[i] for i in group.item_indexes]
            outputs = self._run_with_split(items, group)
            for index, output in zip(group.item_indexes, outputs, strict=True):
                results[index] = output
        return results

    def _run_with_split(
        self, items: list[tuple[Encoded, Mapping[str, Any]]], group: _Group | None
    ) -> list[Any | ModelFailure]:
        if group is None:
            seqs = [seq for enc, _ in items for seq in enc.token_ids]
            input_ids, attention_mask = self._collate(seqs)
            options = parse_generate_options(items[0][1]) if self.task == "generate" else None
            group = _Group(list(range(len(items))), input_ids, attention_mask, options)
        error: str | None = None
        oom = False
        try:
            with torch.inference_mode():
                per_sequence = self._forward(group, items)
        except Exception as exc:
            oom = _is_oom(exc)
            error = f"{type(exc).__name__}: {exc}"
            if not oom and len(items) == 1:
                log.warning("model error", exc_info=True)
        # Act only after leaving the except block: while it runs, the traceback keeps the failed
        # forward's frames, and with them its activations on the device, alive.
        if error is not None and not oom:
            if len(items) == 1:
                return [ModelFailure("ModelError", error)]
            # Isolate the request that breaks the model; the others still get results.
            return [out for item in items for out in self._run_with_split([item], None)]
        if oom:
            self._empty_cache()
            if len(items) == 1:
                enc = items[0][0]
                return [
                    ModelFailure(
                        "OutOfMemory",
                        f"out of device memory for one request ({len(enc.token_ids)} inputs, "
                        f"{enc.n_tokens} tokens) even alone",
                    )
                ]
            half = len(items) // 2
            log.warning("out of device memory; splitting batch of %d requests", len(items))
            return self._run_with_split(items[:half], None) + self._run_with_split(
                items[half:], None
            )
        outputs: list[Any | ModelFailure] = []
        cursor = 0
        for enc, _ in items:
            n = len(enc.token_ids)
            outputs.append(self._finish(per_sequence[cursor : cursor + n]))
            cursor += n
        return outputs

    def _empty_cache(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _forward(
        self, group: _Group, items: Sequence[tuple[Encoded, Mapping[str, Any]]]
    ) -> list[Any]:
        """The forward pass for one padded group -> one JSON-able value per sequence
        (or _NON_FINITE where the model produced NaN/inf, e.g. a float16 overflow)."""
        non_blocking = self.device.startswith("cuda")
        input_ids = group.input_ids.to(self.device, non_blocking=non_blocking)
        attention_mask = group.attention_mask.to(self.device, non_blocking=non_blocking)
        if self.task == "embed":
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            summed = (hidden.to(torch.float32) * mask).sum(dim=1)
            pooled = (summed / mask.sum(dim=1).clamp(min=1e-9)).cpu()
            normalize = torch.tensor(
                [bool(p.get("normalize", True)) for enc, p in items for _ in enc.token_ids]
            )
            vectors = torch.where(normalize.unsqueeze(1), F.normalize(pooled, p=2, dim=1), pooled)
            finite = torch.isfinite(vectors).all(dim=1).tolist()
            # float32 values printed as Python floats take 17 digits; rounded to EMBED_DECIMALS
            # they print short (a 384-d vector: ~8.4 KB of JSON -> ~5.2 KB), and the change
            # (<= 5e-10) is below float32 resolution for the components of a unit vector.
            rows = torch.round(vectors.to(torch.float64), decimals=EMBED_DECIMALS).tolist()
            return [row if ok else _NON_FINITE for row, ok in zip(rows, finite, strict=True)]
        if self.task == "classify":
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            logits = logits.to(torch.float32)
            finite = torch.isfinite(logits).all(dim=-1).tolist()
            scores, labels = torch.softmax(logits, dim=-1).max(dim=-1)
            return [
                {"label": self.labels[int(label)], "score": float(score)} if ok else _NON_FINITE
                for score, label, ok in zip(scores.tolist(), labels.tolist(), finite, strict=True)
            ]
        assert group.options is not None
        generated = self.model.generate(  # type: ignore[operator]
            input_ids=input_ids,
            attention_mask=attention_mask,
            pad_token_id=self._pad_id,
            **group.options.generate_kwargs(),
        )
        continuation = generated[:, input_ids.shape[1] :].cpu()
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in continuation]

    @staticmethod
    def _finish(per_sequence: list[Any]) -> Any:
        if any(value is _NON_FINITE for value in per_sequence):
            # json.dumps(allow_nan=False) would refuse it anyway; a NaN vector is no answer
            return ModelFailure("ModelError", "the model produced non-finite values (NaN/inf)")
        return per_sequence

    # ---------------------------------------------------------------- lifecycle

    def warm_up(self) -> None:
        """One tiny batch end to end, so the first real batch does not pay for lazy init."""
        params: dict[str, Any] = {"max_new_tokens": 1} if self.task == "generate" else {}
        prepared = self.prepare([(self.encode(["warm up"], params), params)])
        outputs = self.run(prepared)
        if isinstance(outputs[0], ModelFailure):
            raise RuntimeError(f"warm-up failed: {outputs[0].type}: {outputs[0].message}")
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)

    def cuda_memory_bytes(self) -> int | None:
        """Device memory the process holds through torch's caching allocator; None on CPU."""
        if not self.device.startswith("cuda"):
            return None
        return int(torch.cuda.memory_reserved(self.device))
