"""The model adapter against real transformers models: tiny random ones per task, and MiniLM."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import InvalidParameters
from worker.model import (
    Encoded,
    InputTooLong,
    ModelFailure,
    ModelRunner,
)
from worker.model.runner import padded

#: the `break_forward` fixture (conftest): (runner, should_fail) -> batch sizes the forward saw
ForwardBreaker = Callable[[ModelRunner, Callable[[torch.Tensor], BaseException | None]], list[int]]

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "Short.",
]


def run_one(runner: ModelRunner, texts: list[str], params: dict[str, Any] | None = None) -> Any:
    params = params or {}
    [output] = runner.run(runner.prepare([(runner.encode(texts, params), params)]))
    return output


def run_many(
    runner: ModelRunner, requests: list[list[str]], params: dict[str, Any] | None = None
) -> list[Any]:
    params = params or {}
    items = [(runner.encode(texts, params), params) for texts in requests]
    return runner.run(runner.prepare(items))


# ------------------------------------------------------------------------------------------ embed


@pytest.fixture(scope="module")
def embedder(tiny_embed_model: Path) -> ModelRunner:
    return ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")


def test_embed_returns_one_unit_vector_per_input(embedder: ModelRunner) -> None:
    vectors = run_one(embedder, SENTENCES[:3])
    assert len(vectors) == 3
    for vector in vectors:
        assert len(vector) == 32 and all(isinstance(x, float) for x in vector)
        assert torch.linalg.vector_norm(torch.tensor(vector)).item() == pytest.approx(1.0, abs=1e-5)
        # rounded to 9 decimals: short JSON numbers, no float32-as-double 17-digit tails
        assert all(x == round(x, 9) and len(repr(x)) <= 13 for x in vector)
    raw = run_one(embedder, SENTENCES[:1], {"normalize": False})
    assert torch.linalg.vector_norm(torch.tensor(raw[0])).item() != pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(
        torch.nn.functional.normalize(torch.tensor(raw), dim=1), torch.tensor(vectors[:1]),
        atol=1e-5,
    )


def test_embed_matches_manual_mean_pooling(embedder: ModelRunner, tiny_embed_model: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_embed_model)
    model = AutoModel.from_pretrained(tiny_embed_model).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
    got = torch.tensor([v[0] for v in run_many(embedder, [[s] for s in SENTENCES])])
    assert torch.allclose(got, expected, atol=1e-5)


def test_embed_padding_does_not_change_results(embedder: ModelRunner) -> None:
    """A sentence batched with much longer ones gets the vector it gets alone."""
    batched = run_many(embedder, [[s] for s in SENTENCES])
    for sentence, vectors in zip(SENTENCES, batched, strict=True):
        alone = run_one(embedder, [sentence])
        assert torch.allclose(torch.tensor(vectors), torch.tensor(alone), atol=1e-5)


def test_encode_tokenises_once_without_padding(
    embedder: ModelRunner, tiny_embed_model: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_embed_model)
    encoded = embedder.encode(SENTENCES[:3], {})
    assert encoded.token_ids == [tokenizer(s)["input_ids"] for s in SENTENCES[:3]]
    assert encoded.n_tokens == sum(len(ids) for ids in encoded.token_ids)
    assert encoded.length == max(len(ids) for ids in encoded.token_ids)
    prepared = embedder.prepare([(encoded, {}), (embedder.encode(["Short."], {}), {})])
    assert prepared.size == 2
    assert prepared.real_tokens == encoded.n_tokens + len(tokenizer("Short.")["input_ids"])
    assert prepared.padded_tokens == 4 * encoded.length


def test_encode_many_is_encode_per_request_with_refusals_in_place(
    embedder: ModelRunner,
) -> None:
    """One tokenizer call for a receive's requests: the same ids as one call per request, and a
    bad request's refusal in its own place, not the others'."""
    requests: list[tuple[list[str], dict[str, Any]]] = [
        (["first sentence here", "and a second one"], {}),
        (["bad parameters"], {"no_such_parameter": 1}),
        (["w " * 500], {}),
        (["the last, alone"], {"normalize": False}),
    ]
    out = embedder.encode_many(requests)
    assert out[0] == embedder.encode(*requests[0])
    assert out[3] == embedder.encode(*requests[3])
    assert isinstance(out[1], InvalidParameters) and "no_such_parameter" in str(out[1])
    assert isinstance(out[2], InputTooLong)
    assert embedder.encode_many([]) == []


def test_encode_is_thread_safe(embedder: ModelRunner) -> None:
    texts = [f"{s} number {i}" for i, s in enumerate(SENTENCES * 20)]
    expected = [embedder.encode([t], {}).token_ids for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda t: embedder.encode([t], {}).token_ids, texts))
    assert got == expected


def test_embed_rejects_unknown_or_bad_parameters(embedder: ModelRunner) -> None:
    with pytest.raises(ValueError, match=r"unknown parameter.*pooling"):
        embedder.encode(["x"], {"pooling": "cls"})
    with pytest.raises(ValueError, match="'normalize' must be true or false"):
        embedder.encode(["x"], {"normalize": "yes"})
    with pytest.raises(ValueError, match="must not be empty"):
        embedder.encode([], {})


# --------------------------------------------------------------------------------- input length


def test_too_long_input_is_refused_not_truncated(tiny_embed_model: Path) -> None:
    runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cpu", max_input_tokens=8)
    assert runner.max_input_tokens == 8
    assert len(runner.encode(["a b c d e f"], {}).token_ids[0]) == 8  # [CLS] + 6 + [SEP]
    with pytest.raises(InputTooLong, match=r"input 1 has 9 tokens; the limit is 8") as info:
        runner.encode(["short", "a b c d e f g"], {})
    assert (info.value.index, info.value.n_tokens, info.value.limit) == (1, 9, 8)
    assert isinstance(info.value, ValueError)  # the worker maps ValueErrors to error results


def test_default_limit_is_the_models_and_cannot_be_exceeded(
    tiny_embed_model: Path, embedder: ModelRunner, minilm_dir: Path
) -> None:
    # tokenizer says 512, the tiny config has 128 positions: the smaller one wins.
    assert embedder.max_input_tokens == 128
    with pytest.raises(InputTooLong):
        embedder.encode([" ".join(["word"] * 200)], {})
    with pytest.raises(ValueError, match="exceeds the model's limit of 128"):
        ModelRunner.load(str(tiny_embed_model), "embed", device="cpu", max_input_tokens=129)
    # A sentence-transformers folder declares its trained length (256 for all-MiniLM-L6-v2).
    assert ModelRunner.load(str(minilm_dir), "embed", device="cpu").max_input_tokens == 256
    explicit = ModelRunner.load(str(minilm_dir), "embed", device="cpu", max_input_tokens=512)
    assert explicit.max_input_tokens == 512


# ---------------------------------------------------------------------------------- classify


def test_classify_returns_softmax_top_label(tiny_classify_model: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    runner = ModelRunner.load(str(tiny_classify_model), "classify", device="cpu")
    outputs = run_many(runner, [[s] for s in SENTENCES[:4]] + [SENTENCES[4:7]])
    tokenizer = AutoTokenizer.from_pretrained(tiny_classify_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classify_model).eval()
    flat = [result for output in outputs for result in output]
    assert len(flat) == 7 and [len(o) for o in outputs] == [1, 1, 1, 1, 3]
    for sentence, result in zip(SENTENCES[:7], flat, strict=True):
        with torch.inference_mode():
            probs = torch.softmax(model(**tokenizer(sentence, return_tensors="pt")).logits[0], -1)
        assert set(result) == {"label", "score"}
        assert result["label"] == model.config.id2label[int(probs.argmax())]
        assert result["label"] in {"negative", "neutral", "positive"}
        assert result["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    with pytest.raises(ValueError, match="unknown parameter"):
        runner.encode(["x"], {"top_k": 2})


# ---------------------------------------------------------------------------------- generate


@pytest.fixture(scope="module")
def generator(tiny_generate_model: Path) -> ModelRunner:
    return ModelRunner.load(str(tiny_generate_model), "generate", device="cpu")


def reference_generate(model_dir: Path, prompt: str, max_new_tokens: int) -> tuple[str, int]:
    """Greedy transformers generate on one prompt: (continuation text, new token count)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[0, inputs["input_ids"].shape[1]:]
    return str(tokenizer.decode(new, skip_special_tokens=True)), int(new.shape[0])


def test_generate_returns_only_the_continuation(
    generator: ModelRunner, tiny_generate_model: Path
) -> None:
    assert not generator.text_encoder.chat_template
    for n in (1, 5):
        [text] = run_one(generator, ["The quick brown fox"], {"max_new_tokens": n})
        expected, n_new = reference_generate(tiny_generate_model, "The quick brown fox", n)
        assert n_new <= n
        assert text == expected
        assert not text.startswith("The quick brown fox")


def test_generate_batches_left_padded_prompts_like_single_ones(generator: ModelRunner) -> None:
    prompts = ["Hello", "The girl is carrying a baby and", "Queues hold"]
    batched = run_many(generator, [[p] for p in prompts], {"max_new_tokens": 6})
    alone = [run_one(generator, [p], {"max_new_tokens": 6}) for p in prompts]
    assert batched == alone


def test_generate_groups_requests_by_parameters(generator: ModelRunner) -> None:
    params_a: dict[str, Any] = {"max_new_tokens": 2}
    params_b: dict[str, Any] = {"max_new_tokens": 7}
    items = [
        (generator.encode(["Hello"], params_a), params_a),
        (generator.encode(["Hello"], params_b), params_b),
    ]
    prepared = generator.prepare(items)
    assert len(prepared.groups) == 2
    short, long = (cast(list[str], out) for out in generator.run(prepared))
    assert long[0].startswith(short[0]) and len(long[0]) > len(short[0])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 0}, "'max_new_tokens' must be between 1 and"),
        ({"max_new_tokens": 10**6}, "'max_new_tokens' must be between 1 and"),
        ({"max_new_tokens": "5"}, "'max_new_tokens' must be an integer"),
        ({"max_new_tokens": True}, "'max_new_tokens' must be an integer"),
        ({"temperature": -1}, "'temperature' must be"),
        ({"temperature": float("nan")}, "'temperature' must be a number"),
        ({"top_p": 0}, "'top_p' must be > 0"),
        ({"top_p": 1.5}, "'top_p' must be"),
        ({"do_sample": True, "temperature": 0}, "'temperature' must be > 0 when do_sample"),
        ({"do_sample": 1}, "'do_sample' must be true or false"),
        ({"max_tokens": 5}, "unknown parameter.*max_tokens.*allowed: max_new_tokens"),
    ],
)
def test_generate_rejects_bad_parameters(
    generator: ModelRunner, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generator.encode(["Hello"], params)


def test_generate_sampling_parameters_run(generator: ModelRunner) -> None:
    params = {"max_new_tokens": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 20}
    [text] = run_one(generator, ["Hello"], params)
    assert isinstance(text, str)


def test_generate_refuses_prompt_plus_new_tokens_beyond_positions(generator: ModelRunner) -> None:
    prompt = " ".join(["fox"] * 100)
    n = len(generator.encode([prompt], {"max_new_tokens": 1}).token_ids[0])
    assert n < 128
    with pytest.raises(InputTooLong, match="with max_new_tokens=60"):
        generator.encode([prompt], {"max_new_tokens": 60})


def test_generate_applies_the_chat_template(tiny_chat_model: Path) -> None:
    from transformers import AutoTokenizer

    runner = ModelRunner.load(str(tiny_chat_model), "generate", device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    templated = runner.text_encoder.apply_chat_template("Hello world")
    assert templated == "<|endoftext|><|user|>Hello world<|end|><|assistant|>"
    encoded = runner.encode(["Hello world"], {"max_new_tokens": 4})
    assert encoded.token_ids == [tokenizer(templated, add_special_tokens=False)["input_ids"]]
    assert encoded.token_ids[0][-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")
    [text] = run_one(runner, ["Hello world"], {"max_new_tokens": 4})
    assert text == reference_generate(tiny_chat_model, templated, 4)[0]


# ------------------------------------------------------------------ OOM splitting, model errors


def test_oom_splits_the_batch_and_retries(
    tiny_embed_model: Path, embedder: ModelRunner, break_forward: ForwardBreaker
) -> None:
    runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")
    requests = [[s] for s in SENTENCES[:5]] + [SENTENCES[5:8]]  # six requests, 8 sequences
    expected = run_many(embedder, requests)

    def oom_above_two(input_ids: torch.Tensor) -> BaseException | None:
        if input_ids.shape[0] > 2:
            return torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return None

    seen = break_forward(runner, oom_above_two)
    outputs = run_many(runner, requests)
    # Sequences per forward: 6 requests (8 seqs) -> [0:3] (3) -> [0] (1) + [1:3] (2);
    # [3:6] (5) -> [3] (1) + [4:6] (4) -> [4] (1) + [5] (3 inputs: out of memory even alone).
    assert seen == [8, 3, 1, 2, 5, 1, 4, 1, 3]
    assert isinstance(outputs[5], ModelFailure) and outputs[5].type == "OutOfMemory"
    assert "3 inputs" in outputs[5].message
    for got, want in zip(outputs[:5], expected[:5], strict=True):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5)


def test_model_error_is_isolated_to_the_request_causing_it(
    tiny_embed_model: Path, break_forward: ForwardBreaker
) -> None:
    runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")
    poison = runner.encode(["monkey"], {}).token_ids[0][1]

    def fail_on_poison(input_ids: torch.Tensor) -> BaseException | None:
        return RuntimeError("kernel failed") if bool((input_ids == poison).any()) else None

    seen = break_forward(runner, fail_on_poison)
    outputs = run_many(runner, [["A man is eating."], ["monkey"], ["A girl."]])
    assert isinstance(outputs[1], ModelFailure) and outputs[1].type == "ModelError"
    assert "kernel failed" in outputs[1].message
    assert seen == [3, 1, 1, 1]  # the batch, then each request alone
    assert not isinstance(outputs[0], ModelFailure) and not isinstance(outputs[2], ModelFailure)


def test_non_finite_output_fails_only_its_request(tiny_classify_model: Path) -> None:
    """A NaN/inf output (e.g. float16 overflow) is a ModelFailure, never a result with NaN."""
    runner = ModelRunner.load(str(tiny_classify_model), "classify", device="cpu")
    poison = runner.encode(["monkey"], {}).token_ids[0][1]
    real_forward = runner.model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        output = real_forward(*args, **kwargs)
        rows = (kwargs["input_ids"] == poison).any(dim=1)
        output.logits[rows] = float("nan")
        return output

    runner.model.forward = forward
    outputs = run_many(runner, [["A man is eating."], ["monkey", "A girl."], ["A girl."]])
    assert isinstance(outputs[1], ModelFailure) and "non-finite" in outputs[1].message
    assert outputs[0][0]["label"] in {"negative", "neutral", "positive"}
    assert outputs[2][0]["score"] > 0


def test_embed_mixed_normalize_flags_in_one_batch(embedder: ModelRunner) -> None:
    normalized, raw = run_many(embedder, [[SENTENCES[0]]], {})[0], run_one(
        embedder, [SENTENCES[0]], {"normalize": False}
    )
    items = [
        (embedder.encode([SENTENCES[0]], {}), {}),
        (embedder.encode([SENTENCES[0]], {"normalize": False}), {"normalize": False}),
    ]
    together = embedder.run(embedder.prepare(items))
    assert torch.allclose(torch.tensor(together[0]), torch.tensor(normalized), atol=1e-6)
    assert torch.allclose(torch.tensor(together[1]), torch.tensor(raw), atol=1e-6)


# ------------------------------------------------------------------ device, dtype, lifecycle


def test_load_rejects_unknown_task(tiny_embed_model: Path) -> None:
    with pytest.raises(ValueError, match="task must be one of embed, classify, generate"):
        ModelRunner.load(str(tiny_embed_model), "translate", device="cpu")  # type: ignore[arg-type]


def test_warm_up_and_memory_report_on_cpu(embedder: ModelRunner) -> None:
    embedder.warm_up()
    assert embedder.cuda_memory_bytes() is None
    assert (embedder.device, embedder.dtype) == ("cpu", "float32")
    assert embedder.torch_dtype == torch.float32


def test_encoded_properties_on_empty() -> None:
    assert Encoded([]).n_tokens == 0 and Encoded([]).length == 0 and Encoded([]).rows == 0


# ------------------------------------------------------------------ the real MiniLM model


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    runner = ModelRunner.load(str(minilm_dir), "embed", device="cpu")
    ours = torch.tensor([v[0] for v in run_many(runner, [[s] for s in SENTENCES])])
    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    theirs = torch.from_numpy(reference.encode(SENTENCES, batch_size=4))
    assert torch.allclose(ours, theirs, atol=1e-5)

    similarity = ours @ ours.T
    eating, bread, baby, horse, white_horse = 0, 1, 2, 3, 6
    monkey_drums, gorilla_drums = 7, 8
    assert similarity[eating, bread] > similarity[eating, baby] + 0.3
    assert similarity[horse, white_horse] > similarity[horse, baby] + 0.3
    assert similarity[monkey_drums, gorilla_drums] > similarity[monkey_drums, eating] + 0.3


@pytest.mark.cuda
def test_minilm_on_cuda_half_precision_is_close_to_cpu(minilm_dir: Path) -> None:
    cpu = ModelRunner.load(str(minilm_dir), "embed", device="cpu")
    gpu = ModelRunner.load(str(minilm_dir), "embed", device="cuda", dtype="float16")
    gpu.warm_up()
    assert gpu.dtype == "float16" and (gpu.cuda_memory_bytes() or 0) > 0
    requests = [[s] for s in SENTENCES]
    a = torch.tensor([v[0] for v in run_many(cpu, requests)])
    b = torch.tensor([v[0] for v in run_many(gpu, requests)])
    assert torch.allclose(a, b, atol=2e-2)
    assert (a * b).sum(dim=1).min() > 0.999


@settings(max_examples=200, deadline=None)
@given(
    seqs=st.lists(st.lists(st.integers(1, 50_000), min_size=1, max_size=12), min_size=1,
                  max_size=9),
    extra=st.integers(0, 4),
    pad=st.integers(0, 3),
    left=st.booleans(),
    attend_padding=st.booleans(),
)
def test_padded_is_the_rows_padded_one_by_one(
    seqs: list[list[int]], extra: int, pad: int, left: bool, attend_padding: bool
) -> None:
    """The masked-copy padding against the obvious construction (pad each row as a list)."""
    width = max(len(s) for s in seqs) + extra
    rows = [[pad] * (width - len(s)) + s if left else s + [pad] * (width - len(s)) for s in seqs]
    masks = [
        [1] * width if attend_padding
        else [0] * (width - len(s)) + [1] * len(s) if left
        else [1] * len(s) + [0] * (width - len(s))
        for s in seqs
    ]
    input_ids, attention_mask = padded(seqs, width, pad, left=left, attend_padding=attend_padding)
    assert input_ids.dtype == attention_mask.dtype == torch.long
    assert input_ids.tolist() == rows
    assert attention_mask.tolist() == masks
