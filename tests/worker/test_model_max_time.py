"""generate's `parameters.max_time_s`: validated without torch, and passed to Hugging Face
generate as `max_time`, which stops decoding (the text so far is the answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.errors import InvalidParameters
from worker.model.params import MAX_TIME_CAP_S, parse_generate_options


def test_max_time_is_optional_positive_and_capped() -> None:
    assert "max_time" not in parse_generate_options({}).generate_kwargs()
    assert parse_generate_options({"max_time_s": 2}).generate_kwargs()["max_time"] == 2.0
    for bad in (0, -1, "1", True, MAX_TIME_CAP_S + 1):
        with pytest.raises(InvalidParameters, match="max_time_s"):
            parse_generate_options({"max_time_s": bad})
    # a different max_time is a different decoding: never in one generate() call with others
    assert parse_generate_options({"max_time_s": 1}) != parse_generate_options({})


@pytest.mark.slow
def test_max_time_stops_generation_early(tiny_generate_model: Path, break_forward: Any) -> None:
    from worker.model import ModelRunner

    runner = ModelRunner.load(str(tiny_generate_model), "generate", device="cpu")
    steps = break_forward(runner, lambda ids: None)  # counts the decoder's forward calls

    def generate(params: dict[str, Any]) -> int:
        steps.clear()
        encoded = runner.encode(["The quick brown fox"], params)
        [output] = runner.run(runner.prepare([(encoded, params)]))
        assert isinstance(output, list) and isinstance(output[0], str)
        return len(steps)

    unbounded = generate({"max_new_tokens": 20})
    assert unbounded > 5  # the tiny model does decode for many steps when let
    assert generate({"max_new_tokens": 20, "max_time_s": 1e-6}) == 1
