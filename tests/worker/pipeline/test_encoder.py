"""The encoders with the real MiniLM tokenizer: one request whose input the tokenizer refuses
fails alone, not the other requests of its receive (they share one batched tokenizer call)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from worker.contract.request import Request
from worker.model import ModelRunner
from worker.pipeline.encoder import Encoders
from worker.pipeline.ledger import Job, JobState
from worker.pipeline.outcomes import Action, Answering, Outcome
from worker.seams import ReceivedMessage


class Recorder:
    """The writer's and the feeder's side of the encoders: what each got."""

    def __init__(self, expected: int) -> None:
        self.finished: list[Outcome] = []
        self.ready: list[Job] = []
        self._expected = expected
        self.done = threading.Event()

    def accept(self, outcomes: list[Outcome], state: JobState) -> None:
        self.finished.extend(outcomes)
        self._check()

    def add(self, jobs: list[Job]) -> None:
        self.ready.extend(jobs)
        self._check()

    def _check(self) -> None:
        if len(self.finished) + len(self.ready) >= self._expected:
            self.done.set()


def test_an_input_the_tokenizer_refuses_fails_only_its_own_request(minilm_dir: Path) -> None:
    runner = ModelRunner.load(str(minilm_dir), "embed", device="cpu")
    # a lone surrogate passes no parse (worker.contract.request refuses it); here it stands for
    # any input the tokenizer throws on, handed over by a parse seam that lets it through
    texts = {"good-1": "one two three", "bad": "ok \ud800 text", "good-2": "four five"}
    requests = {body: Request(body, "embed", [text], {}, None) for body, text in texts.items()}
    recorder = Recorder(len(texts))
    encoders = Encoders(
        runner, requests.__getitem__, recorder, recorder,  # type: ignore[arg-type]
        Answering(runner.name, "results", 60), count=1,
    )
    spawned: list[threading.Thread] = []

    def spawn(name: str, target: Any) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        spawned.append(thread)
        return thread

    encoders.start(spawn)
    encoders.submit([
        Job(i, ReceivedMessage("q", f"m{i}", f"r{i}", body, 1, None), 0.0, 0.0, 60.0)
        for i, body in enumerate(texts)
    ])
    assert recorder.done.wait(30)
    encoders.stop()
    spawned[0].join(10)
    assert sorted(job.request.id for job in recorder.ready) == ["good-1", "good-2"]
    assert all(job.encoded is not None for job in recorder.ready)
    [refused] = recorder.finished
    assert refused.job.request.id == "bad" and refused.action is Action.RELEASE
