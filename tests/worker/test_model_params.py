"""Parameter validation, torch-free: what the contract can check before any model is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.errors import InvalidParameters, RequestRejected
from worker.model.params import (
    DEFAULT_MAX_NEW_TOKENS,
    VALIDATORS,
    GenerateOptions,
    parse_generate_options,
    validate_parameters,
)
from worker.tasks import TASKS

REPO = Path(__file__).resolve().parents[2]


def test_every_task_has_a_validator() -> None:
    assert set(VALIDATORS) == set(TASKS)


def test_generate_defaults_are_greedy() -> None:
    options = parse_generate_options({})
    assert options == GenerateOptions(max_new_tokens=DEFAULT_MAX_NEW_TOKENS, do_sample=False)
    kwargs = options.generate_kwargs()
    # neutral values stated, so a model's generation_config cannot switch sampling on
    assert kwargs["do_sample"] is False
    assert (kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (None, None, None)


def test_a_temperature_means_sampling_unless_do_sample_is_false() -> None:
    assert parse_generate_options({"temperature": 0.7}).do_sample is True
    assert parse_generate_options({"temperature": 0}).do_sample is False
    greedy = parse_generate_options({"temperature": 0.7, "do_sample": False})
    assert greedy.do_sample is False and greedy.generate_kwargs()["temperature"] is None
    sampled = parse_generate_options({"temperature": 0.5, "top_p": 0.9, "top_k": 20})
    assert sampled.generate_kwargs() == {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "do_sample": True, "repetition_penalty": 1.0,
        "temperature": 0.5, "top_p": 0.9, "top_k": 20,
    }


def test_equal_parameters_give_equal_hashable_options() -> None:
    """prepare() groups generate requests by these: equal requests share one generate() call."""
    a = parse_generate_options({"max_new_tokens": 5, "temperature": 0})
    b = parse_generate_options({"temperature": 0.0, "max_new_tokens": 5})
    assert a == b and len({a, b, parse_generate_options({"max_new_tokens": 6})}) == 2


@pytest.mark.parametrize(
    ("task", "params", "message"),
    [
        ("embed", {"pooling": "cls"}, r"unknown parameter\(s\) for task 'embed': pooling"),
        ("embed", {"normalize": 1}, "'normalize' must be true or false, not 1"),
        ("classify", {"top_k": 2}, r"for task 'classify': top_k \(allowed: none\)"),
        ("generate", {"top_k": -1}, "'top_k' must be between 0 and 1000000, not -1"),
        ("generate", {"repetition_penalty": 0}, "'repetition_penalty' must be >= 0.01"),
        # these two passed, then made sampling's logits +-inf: a ModelError retried to the DLQ
        ("generate", {"repetition_penalty": 1e-40, "do_sample": True}, "must be >= 0.01"),
        ("generate", {"temperature": 1e-40}, r"'temperature' must be 0 \(greedy\) or >= 0.01"),
        ("generate", {"temperature": 101}, r"'temperature' must be >= 0.0 and <= 100.0"),
        ("generate", {"max_new_tokens": 2.0}, "'max_new_tokens' must be an integer, not 2.0"),
        # JSON's integers have no bound: math.isfinite(10**400) raised OverflowError (no
        # ValueError): an EncodeError redelivered to the DLQ; the message shows 60 characters
        ("generate", {"temperature": 10**400}, r"'temperature' must be .* not 10{56}\.\.\.$"),
        ("generate", {"max_time_s": -(10**400)}, r"'max_time_s' must be"),
        ("generate", {"top_k": 10**400}, r"'top_k' must be between 0 and 1000000, not 10{56}"),
    ],
)
def test_bad_parameters_are_invalid_parameters_naming_the_parameter(
    task: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidParameters, match=message) as info:
        validate_parameters(task, params)  # type: ignore[arg-type]
    # an error result of this type, and still a ValueError for callers that catch that
    assert info.value.error_type == "InvalidParameters"
    assert isinstance(info.value, RequestRejected) and isinstance(info.value, ValueError)


def test_parameters_must_be_an_object() -> None:
    with pytest.raises(InvalidParameters, match="parameters must be an object, not list"):
        validate_parameters("embed", [])  # type: ignore[arg-type]


def test_params_and_tokenize_load_without_torch() -> None:
    """The contract validates parameters and the pipeline reads worker.model's torch-free names
    without paying for a torch import; the OMP_WAIT_POLICY default is set on the way."""
    code = (
        "import os, sys\n"
        "import worker.model.params, worker.model.tokenize\n"
        "from worker.model import GenerateOptions, InputTooLong, ModelFailure, Encoded\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PASSIVE"
    explicit = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True, text=True, timeout=60,
    )
    assert explicit.stdout.strip() == "ACTIVE"  # an explicit setting wins


def test_torch_side_names_load_on_first_use() -> None:
    import worker.model
    from worker.model.runner import ModelRunner

    assert worker.model.ModelRunner is ModelRunner
    with pytest.raises(AttributeError, match="has no attribute 'Runner'"):
        _ = worker.model.Runner


def test_an_error_echoes_a_bounded_part_of_what_the_request_sent() -> None:
    """A bad value or a heap of unknown names was copied whole into the error result: a 256 KB
    request made a 768 KB answer (a claim-check, or ResultTooLarge, for input never run)."""
    from worker.model.params import parse_generate_options

    with pytest.raises(InvalidParameters) as bad:
        parse_generate_options({"do_sample": "x" * 100_000})
    assert len(str(bad.value)) < 200
    with pytest.raises(InvalidParameters) as many:
        parse_generate_options({f"key{i}" + "k" * 100: 1 for i in range(1000)})
    assert len(str(many.value)) < 600 and "and 995 more" in str(many.value)
