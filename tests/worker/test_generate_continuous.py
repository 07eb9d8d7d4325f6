"""Continuous batching for generate (WORKER_GENERATE_BATCHING=continuous) against the static path
(generate() per batch) with real tiny decoders: the same tokens, each request answered at its own
end, requests joining a session in flight, stop strings, max_time_s, and failures ending as the
static path ends them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worker_test_helpers import (
    ResultReader,
    counts,
    make_queues,
    request,
    send_bodies,
    start_worker,
    wait_for,
)

from worker.model import ModelFailure, ModelRunner
from worker.model.decode import DecodeSession, stop_reached
from worker.model.params import cut_at_stop
from worker.pipeline import Worker

PROMPTS = [
    "hello there",
    "a much longer prompt about the weather today and tomorrow",
    "x",
    "the cat sat on the mat and looked at the dog",
]
LENGTHS = [3, 40, 17, 9]


@pytest.fixture(params=["llama", "gpt2"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    fixture = "tiny_chat_model" if request.param == "llama" else "tiny_generate_model"
    return request.getfixturevalue(fixture)


@pytest.fixture
def runners(model_dir: Path) -> tuple[ModelRunner, ModelRunner]:
    continuous = ModelRunner.load(str(model_dir), "generate")
    static = ModelRunner.load(str(model_dir), "generate", generate_batching="static")
    assert continuous.continuous and not static.continuous
    return continuous, static


def items(runner: ModelRunner, prompts: list[str], params: list[dict[str, Any]]) -> list[Any]:
    return [(runner.encode([p], q), q) for p, q in zip(prompts, params, strict=True)]


def alone(static: ModelRunner, prompt: str, params: dict[str, Any]) -> Any:
    """What generate() gives the request on its own (no padding)."""
    return static.run(static.prepare(items(static, [prompt], [params])))[0]


def test_greedy_tokens_equal_generate_for_mixed_lengths(
    runners: tuple[ModelRunner, ModelRunner],
) -> None:
    continuous, static = runners
    params = [{"max_new_tokens": n} for n in LENGTHS]
    got = continuous.run(continuous.prepare(items(continuous, PROMPTS, params)))
    assert got == [alone(static, p, q) for p, q in zip(PROMPTS, params, strict=True)]
    # token for token: the session's rows hold the ids, compare them with generate()'s
    session = continuous.open_session()
    assert session is not None
    decode: DecodeSession = session._decode
    seen: dict[int, list[int]] = {}
    real_settle = decode._settle

    def settle(chosen: torch.Tensor, first: int) -> Any:
        rows = list(decode.rows)
        out = real_settle(chosen, first)
        for row in rows:
            seen[row.tag[0]] = list(row.generated)  # type: ignore[index]
        return out

    decode._settle = settle  # type: ignore[method-assign]
    session.add(continuous.prepare(items(continuous, PROMPTS, params)), range(len(PROMPTS)))
    while session.active:
        session.step()
    for key, (prompt, n) in enumerate(zip(PROMPTS, LENGTHS, strict=True)):
        ids = torch.tensor([static.encode([prompt], {}).token_ids[0]])
        expected = static.model.generate(  # type: ignore[operator]
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
            do_sample=False, pad_token_id=static.head.pad_id,
        )[0, ids.shape[1] :].tolist()
        assert seen[key] == expected


def test_sampling_with_a_seed_equals_generate(runners: tuple[ModelRunner, ModelRunner]) -> None:
    continuous, static = runners
    params = {"max_new_tokens": 12, "temperature": 0.7, "top_k": 20, "top_p": 0.9,
              "repetition_penalty": 1.3}
    torch.manual_seed(7)
    got = continuous.run(continuous.prepare(items(continuous, [PROMPTS[1]], [params])))[0]
    torch.manual_seed(7)
    assert got == alone(static, PROMPTS[1], params)
    greedy_penalty = {"max_new_tokens": 40, "repetition_penalty": 2.0}
    got = continuous.run(continuous.prepare(items(continuous, [PROMPTS[1]], [greedy_penalty])))
    assert got[0] == alone(static, PROMPTS[1], greedy_penalty)
    assert got[0] != alone(static, PROMPTS[1], {"max_new_tokens": 40})  # the penalty counts


def test_a_short_request_is_answered_while_a_long_one_of_its_batch_decodes(
    runners: tuple[ModelRunner, ModelRunner],
) -> None:
    continuous, _ = runners
    session = continuous.open_session()
    assert session is not None
    params = [{"max_new_tokens": 40}, {"max_new_tokens": 2}]
    prepared = continuous.prepare(items(continuous, PROMPTS[:2], params))
    answered = session.add(prepared, ["long", "short"])
    steps = 0
    while not answered:
        answered = session.step()
        steps += 1
    assert [tag for tag, _ in answered] == ["short"] and steps == 1
    assert session.active == 1 and session.rows == 1  # the long one decodes on, alone


def test_a_request_joining_mid_session_gets_what_it_gets_alone(
    runners: tuple[ModelRunner, ModelRunner],
) -> None:
    continuous, static = runners
    session = continuous.open_session()
    assert session is not None
    first = {"max_new_tokens": 30}
    later = [{"max_new_tokens": 10}, {"max_new_tokens": 25}]
    results: dict[str, Any] = dict(
        session.add(continuous.prepare(items(continuous, [PROMPTS[3]], [first])), ["first"])
    )
    for _ in range(6):
        results.update(session.step())
    assert session.active == 1
    joining = continuous.prepare(items(continuous, [PROMPTS[1], PROMPTS[0]], later))
    results.update(session.add(joining, ["b", "c"]))
    assert session.rows == 3
    while session.active:
        results.update(session.step())
    assert results == {
        "first": alone(static, PROMPTS[3], first),
        "b": alone(static, PROMPTS[1], later[0]),
        "c": alone(static, PROMPTS[0], later[1]),
    }


def test_stop_strings_end_the_text_before_them(runners: tuple[ModelRunner, ModelRunner]) -> None:
    continuous, static = runners
    full = alone(static, PROMPTS[1], {"max_new_tokens": 30})[0]
    stop = full[8:11]
    expected = full[: full.find(stop)]
    params = {"max_new_tokens": 30, "stop": ["never-there", stop]}
    assert continuous.run(continuous.prepare(items(continuous, [PROMPTS[1]], [params]))) == [
        [expected]
    ]
    assert alone(static, PROMPTS[1], params) == [expected]  # the static path cuts the same
    session = continuous.open_session()
    assert session is not None
    session.add(continuous.prepare(items(continuous, [PROMPTS[1]], [params])), ["r"])
    steps = 0
    while session.active:
        session.step()
        steps += 1
    assert steps < 29  # it stopped at the stop string, not at max_new_tokens


def test_the_static_path_stops_at_the_stop_string_too(
    runners: tuple[ModelRunner, ModelRunner],
) -> None:
    """generate() ran on to max_new_tokens and the text was cut after: the device decoded
    tokens nobody gets. Now a row ends at its stop string, as in a session: far fewer forwards
    than max_new_tokens, the same text. A stop string made of the prompt's end and the first
    token does not count (the continuation alone must hold it, as in a session)."""
    _, static = runners
    full = alone(static, PROMPTS[1], {"max_new_tokens": 40})[0]
    stop = full[4:7]
    forwards = []
    hook = static.model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        text = alone(static, PROMPTS[1], {"max_new_tokens": 40, "stop": [stop]})
    finally:
        hook.remove()
    assert text == [full[: full.find(stop)]]
    assert len(forwards) < 20, len(forwards)
    spanning = PROMPTS[1][-3:] + full[:1]  # the prompt's last characters and the first output
    assert alone(static, PROMPTS[1], {"max_new_tokens": 40, "stop": [spanning]}) == [
        full[: full.find(spanning)] if spanning in full else full
    ]


def test_stop_strings_are_looked_for_without_decoding_the_whole_text_each_step(
    runners: tuple[ModelRunner, ModelRunner],
) -> None:
    """Each step decoded every token generated so far to look for the stop strings: O(n²) in
    the continuation (4,096 tokens: 8 M decoded, on the model thread). Only the last tokens are
    decoded now: here under half of the n(n+1)/2 tokens the old check decoded."""
    continuous, _ = runners
    tokenizer = continuous.tokenizer
    decoded: list[int] = []
    real_decode = tokenizer.decode

    def counting_decode(ids: Any, **kwargs: Any) -> Any:
        decoded.append(len(ids))
        return real_decode(ids, **kwargs)

    session = continuous.open_session()
    assert session is not None
    params = {"max_new_tokens": 110, "stop": ["never-there"], "repetition_penalty": 1.3}
    tokenizer.decode = counting_decode  # type: ignore[method-assign]
    try:
        session.add(continuous.prepare(items(continuous, ["x"], [params])), ["r"])
        steps = 0
        while session.active:
            session.step()
            steps += 1
    finally:
        tokenizer.decode = real_decode  # type: ignore[method-assign]
    assert steps >= 100
    assert sum(decoded) < steps * (steps + 1) / 4, (steps, sum(decoded))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stop_reached_stops_at_the_same_token_as_decoding_everything(
    bpe_tokenizer: Any, data: st.DataObject
) -> None:
    """Fed one token at a time, as a session does: the first token at which the windowed check
    sees a stop string is the first at which the whole text holds it."""
    vocab = len(bpe_tokenizer)
    ids = data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=120))

    def decode(part: list[int]) -> str:
        return str(bpe_tokenizer.decode(part, skip_special_tokens=True))

    full = decode(ids)
    start = data.draw(st.integers(0, max(0, len(full) - 1)))
    length = data.draw(st.integers(1, 40))
    stop = [full[start : start + length] or "x", data.draw(st.text(min_size=1, max_size=5))]
    expected = next((k for k in range(1, len(ids) + 1) if cut_at_stop(decode(ids[:k]), stop)[1]),
                    None)
    got = next((k for k in range(1, len(ids) + 1) if stop_reached(decode, ids[:k], stop)), None)
    assert got == expected


def test_max_time_s_ends_a_row_at_its_own_time(runners: tuple[ModelRunner, ModelRunner]) -> None:
    continuous, static = runners
    now = [0.0]

    def clock() -> float:  # one second per token chosen
        now[0] += 1.0
        return now[0]

    decode = DecodeSession(
        continuous.model, continuous.tokenizer, continuous.head.pad_id, "cpu", clock=clock
    )
    session = continuous.session_over(decode)
    params: list[dict[str, Any]] = [
        {"max_new_tokens": 50, "max_time_s": 4.5}, {"max_new_tokens": 12}
    ]
    results: dict[str, Any] = dict(
        session.add(continuous.prepare(items(continuous, PROMPTS[:2], params)), ["timed", "free"])
    )
    while "timed" not in results:
        results.update(session.step())
    assert session.active == 1  # the other row runs on to its own limit
    while session.active:
        results.update(session.step())
    full = alone(static, PROMPTS[0], {"max_new_tokens": 50})[0]
    timed = results["timed"][0]
    assert full.startswith(timed) and len(timed) < len(full)
    assert results["free"] == alone(static, PROMPTS[1], {"max_new_tokens": 12})


POISON = "monkey"


def poison(runner: ModelRunner) -> int:
    return runner.encode([POISON], {}).token_ids[0][0]


@pytest.mark.parametrize(
    "error",
    [
        lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        lambda: RuntimeError("shape mismatch in the attention"),
        lambda: RuntimeError("CUDA error: an illegal memory access was encountered"),
    ],
    ids=["oom", "model-error", "device-fault"],
)
def test_failures_end_as_on_the_static_path(
    tiny_chat_model: Path, break_forward: Any, error: Any
) -> None:
    outputs = []
    for mode in ("continuous", "static"):
        runner = ModelRunner.load(str(tiny_chat_model), "generate", generate_batching=mode)
        bad = poison(runner)
        break_forward(runner, lambda ids, bad=bad: error() if bool((ids == bad).any()) else None)
        prompts = ["hello there", POISON, "the cat sat"]
        params = [{"max_new_tokens": 6}] * 3
        outputs.append(runner.run(runner.prepare(items(runner, prompts, params))))
    continuous, static = outputs
    assert continuous == static
    assert isinstance(static[1], ModelFailure)
    assert [isinstance(o, ModelFailure) for o in static] != [False] * 3


def test_the_short_result_is_written_before_the_long_one_finishes(
    tiny_chat_model: Path, sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """Through the real pipeline on a local SQS server: the long request's decoding is held
    (between two steps) until the short one's result has been read off the result queue."""
    runner = ModelRunner.load(str(tiny_chat_model), "generate")
    gate = threading.Event()
    real_open = runner.open_session

    def open_session() -> Any:
        session = real_open()
        assert session is not None
        real_step = session.step
        short_answered = threading.Event()

        def step() -> Any:
            if short_answered.is_set() and session.active:
                # the executor handed the short result on after the last step: hold the long
                assert gate.wait(60), "the short result never reached the result queue"
            answered = real_step()
            if any(job.request.id == "short" for job, _ in answered):
                short_answered.set()
            return answered

        session.step = step  # type: ignore[method-assign]
        return session

    runner.open_session = open_session  # type: ignore[method-assign]
    queues = make_queues(sqs_client)
    send_bodies(
        sqs_client,
        queues.input,
        [
            request("the cat sat on the mat", id="long", parameters={"max_new_tokens": 40}),
            request("hello there", id="short", parameters={"max_new_tokens": 2}),
        ],
    )
    start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, task="generate",
        receivers=1, max_wait_ms=200,
    )
    reader = ResultReader(sqs_client, queues.results)
    try:
        first = reader.wait_for(1, timeout=30)
        assert [r["id"] for r in first.values()] == ["short"]
    finally:
        gate.set()
    results = reader.wait_for(2, timeout=30)
    by_id = {r["id"]: r for r in results.values()}
    assert set(by_id) == {"short", "long"}
    assert all("outputs" in r for r in by_id.values()), by_id


def test_a_drain_finishes_the_requests_in_the_session_and_releases_the_rest(
    tiny_chat_model: Path, sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """SIGTERM while a session decodes: what is in the session is answered, no new batch joins,
    and what was waiting (prepared or not) is released for another replica."""
    runner = ModelRunner.load(str(tiny_chat_model), "generate")
    gate, decoding = threading.Event(), threading.Event()
    real_open = runner.open_session

    def open_session() -> Any:
        session = real_open()
        assert session is not None
        real_step = session.step

        def step() -> Any:
            decoding.set()
            assert gate.wait(60)
            return real_step()

        session.step = step  # type: ignore[method-assign]
        return session

    runner.open_session = open_session  # type: ignore[method-assign]
    queues = make_queues(sqs_client, visibility_s=300)
    n = 6
    bodies = [request(f"message {i}", parameters={"max_new_tokens": 12}) for i in range(n)]
    send_bodies(sqs_client, queues.input, bodies)
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, task="generate",
        max_batch_size=2, buffer_max=n, visibility_timeout_s=300,
    )
    assert decoding.wait(30)
    wait_for(lambda: worker.held == n, 30, "the worker to hold every message")
    drained = threading.Thread(target=worker.shutdown, kwargs={"timeout_s": 30})
    drained.start()
    wait_for(lambda: worker._draining.is_set(), 10, "the drain to begin")
    gate.set()
    drained.join(40)
    assert not drained.is_alive()
    reader = ResultReader(sqs_client, queues.results)
    reader.wait_for(2, timeout=30)
    reader.poll(wait_s=0)
    assert len(reader.results) == 2  # the session's two sequences (WORKER_MAX_BATCH_SIZE=2)
    assert all("outputs" in r for r in reader.results.values())
    visible, _ = wait_for(
        lambda: (c := counts(sqs_client, queues.input))[1] == 0 and c, 10, "releases to land"
    )
    assert visible == n - 2
    assert worker.held == 0


def test_a_sliding_window_cache_runs_statically(tiny_chat_model: Path, tmp_path: Path) -> None:
    """A session cannot pad and merge a sliding-window cache: such a model batches statically
    (and still answers), whatever WORKER_GENERATE_BATCHING says."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        sliding_window=16, eos_token_id=tokenizer.eos_token_id,
    )
    MistralForCausalLM(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    runner = ModelRunner.load(str(tmp_path), "generate")
    assert not runner.continuous and runner.open_session() is None
    [output] = runner.run(runner.prepare(items(runner, ["hello"], [{"max_new_tokens": 3}])))
    assert isinstance(output, list) and isinstance(output[0], str)


@pytest.mark.parametrize(
    "bad",
    [5, [1, "x"], [""], ["x" * 257], ["s"] * 17, {"a": 1}],
    ids=["number", "not-strings", "empty", "too-long", "too-many", "object"],
)
def test_a_bad_stop_parameter_is_invalid_parameters_naming_it(bad: Any) -> None:
    from worker.errors import InvalidParameters
    from worker.model.params import parse_generate_options

    with pytest.raises(InvalidParameters, match="'stop'"):
        parse_generate_options({"stop": bad})
    assert parse_generate_options({"stop": "###"}).stop == ("###",)
    assert parse_generate_options({"stop": ["a", "b"]}).stop == ("a", "b")


def test_a_failed_step_frees_the_session_before_the_static_path_runs_its_requests_again(
    tiny_generate_model: Path,
) -> None:
    """The failed step's traceback (its frames hold the session's KV cache and activations)
    stayed alive while the static path ran every request again: on a GPU that ran out of
    memory, the retry met the same shortage and split down to single requests. Now the cache is
    unreachable by the time the static path runs."""
    import gc
    import weakref

    runner = ModelRunner.load(str(tiny_generate_model), "generate")
    real = runner.model.forward
    kv: list[weakref.ref[torch.Tensor]] = []

    def forward(*args: Any, **kwargs: Any) -> Any:
        if not kv and kwargs["input_ids"].shape[1] == 1:  # the first decode step
            cache = kwargs.get("past_key_values", kwargs.get("cache"))
            kv.append(weakref.ref(cache.layers[0].keys))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    runner.model.forward = forward  # type: ignore[method-assign]
    session = runner.open_session()
    assert session is not None
    static = session._run_static
    alive_at_retry: list[bool] = []

    def run_static(items: Any) -> Any:
        gc.collect()
        alive_at_retry.append(kv[0]() is not None)
        return static(items)

    session._run_static = run_static  # type: ignore[method-assign]
    params = {"max_new_tokens": 5}
    answers = dict(session.add(runner.prepare(items(runner, ["Hello world"], [params])), ["r"]))
    while session.active:
        answers.update(session.step())
    assert alive_at_retry == [False]
    assert isinstance(answers["r"], list)  # answered by the static path


def test_a_join_that_fails_part_way_leaves_the_session_as_it_was(
    tiny_generate_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge replaced the cache layer by layer: out of memory at the second layer left
    layers of different batch sizes, the next step failed, and every row in the session was
    generated again from the start on the static path. Now the rows in flight go on."""
    import worker.model.decode as decode

    runner = ModelRunner.load(str(tiny_generate_model), "generate")
    session = runner.open_session()
    assert session is not None
    static = session._run_static
    static_calls: list[int] = []

    def run_static(batch: Any) -> Any:
        static_calls.append(len(batch))
        return static(batch)

    session._run_static = run_static  # type: ignore[method-assign]
    params = {"max_new_tokens": 12}
    answers = dict(session.add(
        runner.prepare(items(runner, ["Hello world", "The quick"], [params, params])), ["a", "b"]
    ))
    for _ in range(3):
        answers.update(session.step())
    real_pad = decode._pad_left
    pads = [0]

    def pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
        pads[0] += 1
        if pads[0] == 5:  # the second layer's keys
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_pad(tensor, length)

    monkeypatch.setattr(decode, "_pad_left", pad_left)
    answers.update(session.add(runner.prepare(items(runner, ["A man eats"], [params])), ["c"]))
    monkeypatch.setattr(decode, "_pad_left", real_pad)
    layers = session._decode._cache.layers  # type: ignore[union-attr]
    assert {layer.keys.shape[0] for layer in layers} == {2}  # as before the join
    while session.active:
        answers.update(session.step())
    assert static_calls == [1]  # only the joining request went the static way
    assert sorted(answers) == ["a", "b", "c"]


def test_a_device_fault_on_a_join_answers_the_earlier_joins_requests_too(
    tiny_generate_model: Path, sqs_server: Any, sqs_client: Any, running_workers: list[Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A device fault on the second join fails every request in the session (DeviceError), but
    the executor kept only the joining batch's answers: the first batch's requests stayed
    RUNNING for ever, extended by heartbeats up to the 12 h cap, never answered or released.
    Every request is handed back now, and answered on its redelivery. (The first batch's
    decoding makes no progress until the second batch has joined, so the fault meets both.)"""
    joins: list[int] = []
    real_join, real_step = DecodeSession.join, DecodeSession.step

    def join(self: DecodeSession, entries: Any) -> Any:
        joins.append(len(entries))
        if len(joins) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real_join(self, entries)

    def step(self: DecodeSession) -> Any:
        return [] if len(joins) < 2 else real_step(self)  # no token until the second join

    monkeypatch.setattr(DecodeSession, "join", join)
    monkeypatch.setattr(DecodeSession, "step", step)
    runner = ModelRunner.load(str(tiny_generate_model), "generate")
    queues = make_queues(sqs_client)
    worker = start_worker(
        sqs_server.endpoint_url, queues, runner, running_workers, task="generate",
        max_batch_size=4, receivers=1,
    )
    for first in (0, 2):  # two batches of two, the second sent once the first has joined
        send_bodies(sqs_client, queues.input, [
            request(f"message {i}", id=f"r{i}", parameters={"max_new_tokens": 20})
            for i in (first, first + 1)
        ])
        wait_for(lambda n=first: len(joins) > n // 2, 30, "the batch to join")
    # DeviceError is not the requests' fault: all four go back to the queue, and come back
    results = ResultReader(sqs_client, queues.results).wait_for(4, timeout=30)
    assert sorted(r["id"] for r in results.values()) == ["r0", "r1", "r2", "r3"]
    wait_for(lambda: worker.held == 0, 10, "nothing left held")


def test_a_stop_string_naming_a_special_token_ends_the_row_there(tiny_chat_model: Path) -> None:
    """stop=["<|end|>"] (a chat model's end of turn, not its EOS): stop strings are looked for
    in text decoded without special tokens, so this one never matched, and the row ran on to
    max_new_tokens past its turn, the text after it in the answer."""
    continuous = ModelRunner.load(str(tiny_chat_model), "generate")
    static = ModelRunner.load(str(tiny_chat_model), "generate", generate_batching="static")
    tokenizer = continuous.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    prompt, plain = "hello there", {"max_new_tokens": 12}
    ids = continuous.encode([prompt], plain).token_ids[0]
    before = continuous.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12,
                                       pad_token_id=0)[0, len(ids):].tolist()
    # the model now prefers <|end|> where it first said a token it had not said before
    turn = next(k for k in range(1, len(before)) if before[k] not in before[:k])
    with torch.no_grad():
        for runner in (continuous, static):
            runner.model.lm_head.weight[end] = 3 * runner.model.lm_head.weight[before[turn]]
    raw = continuous.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12,
                                    pad_token_id=0)[0, len(ids):].tolist()
    assert end in raw and raw.index(end) < 11
    expected = tokenizer.decode(raw[: raw.index(end)], skip_special_tokens=True)
    full = tokenizer.decode(raw, skip_special_tokens=True)
    assert expected != full
    params = {"max_new_tokens": 12, "stop": ["<|end|>"]}
    for runner in (continuous, static):
        [[text]] = runner.run(runner.prepare(items(runner, [prompt], [params])))
        assert text == expected
