"""Request parameters per task, validated without torch: the contract and the encoder both call
this, and a bad value is an `InvalidParameters` error result naming the parameter.

Each task has one validator in `VALIDATORS`; a new task adds its entry (and a head in
`worker.model.heads`), it does not grow a branch here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.errors import InvalidParameters
from worker.tasks import Task

# Generation parameters a request may set, with their defaults.
DEFAULT_MAX_NEW_TOKENS = 64
#: below these, sampling's logits overflow to +-inf (softmax NaN: the forward raises)
MIN_TEMPERATURE = 0.01
MIN_REPETITION_PENALTY = 0.01
MAX_NEW_TOKENS_CAP = 4096
GENERATE_PARAMS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "max_time_s",
    "stop",
)
#: at most this many stop strings per request, each at most STOP_MAX_CHARS long
STOP_MAX_STRINGS = 16
STOP_MAX_CHARS = 256
#: the longest `max_time_s` a request may ask for (HF generate's `max_time`)
MAX_TIME_CAP_S = 3600.0
EMBED_PARAMS = ("normalize",)


@dataclass(frozen=True)
class GenerateOptions:
    """Validated generation parameters; hashable, so equal requests share one generate() call."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_time_s: float | None = None  # generation stops after this long (the text so far kept)
    stop: tuple[str, ...] = ()  # the text ends before the first of these it contains

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.max_time_s is not None:
            kwargs["max_time"] = self.max_time_s
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            # Explicit neutral values so a model's generation_config cannot switch sampling on.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def _check_keys(params: Mapping[str, Any], allowed: Sequence[str], task: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "none"
        # a few, each cut short: the error result echoes them (100 KB of keys made 186 KB)
        named = ", ".join(k if len(k) <= 40 else k[:37] + "..." for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidParameters(
            f"unknown parameter(s) for task {task!r}: {named}{more} (allowed: {allowed_text})"
        )


def _int_param(params: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name, default)
    # bool is an int subclass: `true` for a count is a client bug, not 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameters(f"parameter {name!r} must be an integer, not {_shown(value)}")
    if not lo <= value <= hi:
        raise InvalidParameters(
            f"parameter {name!r} must be between {lo} and {hi}, not {_shown(value)}"
        )
    return value


def _float_param(
    params: Mapping[str, Any], name: str, default: float, lo: float, hi: float, lo_open: bool
) -> float:
    value = params.get(name, default)
    # an int is compared as it is: math.isfinite(10**400) raised OverflowError, which is no
    # ValueError, so the request went round to the DLQ instead of getting InvalidParameters
    not_finite = isinstance(value, float) and not math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not_finite:
        raise InvalidParameters(f"parameter {name!r} must be a number, not {_shown(value)}")
    if value > hi or value < lo or (lo_open and value == lo):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise InvalidParameters(
            f"parameter {name!r} must be {bound} and <= {hi}, not {_shown(value)}"
        )
    return float(value)


def _shown(value: Any) -> str:
    """A request's value in an error message, at most 60 characters (an int may have 400)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bool_param(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise InvalidParameters(f"parameter {name!r} must be true or false, not {_shown(value)}")
    return value


def parse_generate_options(params: Mapping[str, Any]) -> GenerateOptions:
    """Validate a generate request's parameters; a bad value raises InvalidParameters naming it."""
    _check_keys(params, GENERATE_PARAMS, "generate")
    temperature = _float_param(params, "temperature", 1.0, 0.0, 100.0, lo_open=False)
    # A request that sets a temperature means sampling, unless it says do_sample=false.
    do_sample_default = "temperature" in params and temperature > 0.0
    do_sample = _bool_param(params, "do_sample", do_sample_default)
    if do_sample and temperature == 0.0:
        raise InvalidParameters("parameter 'temperature' must be > 0 when do_sample is true")
    if 0.0 < temperature < MIN_TEMPERATURE:
        # logits / 1e-40 are +-inf: softmax gives NaN and sampling raises (a ModelError,
        # retried to the DLQ, instead of an answer naming the parameter)
        raise InvalidParameters(
            f"parameter 'temperature' must be 0 (greedy) or >= {MIN_TEMPERATURE}, not {temperature}"
        )
    return GenerateOptions(
        max_new_tokens=_int_param(
            params, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS, 1, MAX_NEW_TOKENS_CAP
        ),
        do_sample=do_sample,
        temperature=temperature,
        top_p=_float_param(params, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=_int_param(params, "top_k", 0, 0, 1_000_000),
        repetition_penalty=_float_param(
            params, "repetition_penalty", 1.0, MIN_REPETITION_PENALTY, 100.0, lo_open=False
        ),
        max_time_s=(
            _float_param(params, "max_time_s", 0.0, 0.0, MAX_TIME_CAP_S, lo_open=True)
            if "max_time_s" in params
            else None
        ),
        stop=_stop_param(params),
    )


def _stop_param(params: Mapping[str, Any]) -> tuple[str, ...]:
    value = params.get("stop", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameters(
            f"parameter 'stop' must be a string or a list of strings, not {_shown(value)}"
        )
    if len(value) > STOP_MAX_STRINGS:
        raise InvalidParameters(
            f"parameter 'stop' may hold at most {STOP_MAX_STRINGS} strings, not {len(value)}"
        )
    for text in value:
        if not 1 <= len(text) <= STOP_MAX_CHARS:
            raise InvalidParameters(
                f"parameter 'stop': each string must be 1 to {STOP_MAX_CHARS} characters, "
                f"not {len(text)}"
            )
    return tuple(value)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the earliest stop string in it, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def embed_normalize(params: Mapping[str, Any]) -> bool:
    """Whether an embed request wants unit vectors (the default, as sentence-transformers')."""
    _check_keys(params, EMBED_PARAMS, "embed")
    return _bool_param(params, "normalize", True)


def _no_parameters(task: str) -> Callable[[Mapping[str, Any]], None]:
    def validate(params: Mapping[str, Any]) -> None:
        _check_keys(params, (), task)

    return validate


#: one validator per task; each raises InvalidParameters or returns what it parsed
VALIDATORS: dict[Task, Callable[[Mapping[str, Any]], object]] = {
    "embed": embed_normalize,
    "classify": _no_parameters("classify"),
    "generate": parse_generate_options,
}


def validate_parameters(task: Task, params: Mapping[str, Any]) -> None:
    """Raise InvalidParameters unless `params` are what `task` takes."""
    if not isinstance(params, Mapping):
        raise InvalidParameters(f"parameters must be an object, not {type(params).__name__}")
    VALIDATORS[task](params)


# ---------------------------------------------------------------------------- image tasks

IMAGE_CLASSIFY_PARAMS = ("top_k",)
MAX_TOP_K = 1000


def image_embed_normalize(params: Mapping[str, Any]) -> bool:
    """image-embed takes `normalize`, as embed does."""
    _check_keys(params, EMBED_PARAMS, "image-embed")
    return _bool_param(params, "normalize", True)


def image_classify_top_k(params: Mapping[str, Any]) -> int | None:
    """image-classify's `top_k`: None (absent: the top label as {"label", "score"}) or the
    number of best labels wanted (a list, best first)."""
    _check_keys(params, IMAGE_CLASSIFY_PARAMS, "image-classify")
    if "top_k" not in params:
        return None
    return _int_param(params, "top_k", 1, 1, MAX_TOP_K)


VALIDATORS.update({"image-embed": image_embed_normalize, "image-classify": image_classify_top_k})
