"""The producers' client end to end with a worker on real local SQS servers: embed() through a
temporary reply queue the worker's allow-list names by prefix, outputs in input order across
several requests, error results raised as RequestFailed, a missing worker as ResultTimeout, and
the real (tiny) embedding model behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from worker_test_helpers import FakeRunner, make_queues, start_worker

from gpuqueue import Client, RequestFailed, ResultTimeout
from worker.pipeline import Worker


def reply_prefix(queue_url: str) -> str:
    """The allow-list entry for the client's temporary queues on this server."""
    return queue_url.rsplit("/", 1)[0] + "/gpuqueue-reply-"


def test_embed_waits_for_its_own_results_in_input_order(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    queues = make_queues(sqs_client)
    start_worker(
        sqs_server.endpoint_url, queues, FakeRunner(), running_workers,
        reply_to_allow=reply_prefix(queues.input),
    )
    texts = [" ".join(["w"] * (i % 7 + 1)) for i in range(20)]
    with Client(queues.input, endpoint_url=sqs_server.endpoint_url, inputs_per_request=3) as c:
        outputs = c.embed(texts, timeout_s=60)
        reply_queue = c.reply_queue_url
        assert reply_queue is not None and "/gpuqueue-reply-" in reply_queue
        # FakeRunner's "vector" is the word count: order kept over 7 requests
        assert outputs == [i % 7 + 1 for i in range(20)]
        with pytest.raises(RequestFailed) as failed:
            c.embed(["fine", "w " * 60], timeout_s=60)  # the second is over FakeRunner's 50
        assert failed.value.error_type == "InputTooLong"
    remaining = sqs_client.list_queues(QueueNamePrefix="gpuqueue-reply-").get("QueueUrls", [])
    assert reply_queue not in remaining  # deleted on exit


def test_no_worker_means_a_result_timeout_naming_the_ids(
    sqs_server: Any, sqs_client: Any
) -> None:
    queues = make_queues(sqs_client)
    with (
        Client(queues.input, queues.results, endpoint_url=sqs_server.endpoint_url) as c,
        pytest.raises(ResultTimeout) as timed_out,
    ):
        c.embed(["nobody reads this"], timeout_s=1.5)
    assert len(timed_out.value.missing) == 1


@pytest.mark.slow
def test_embed_with_the_real_tiny_model(
    fauxqs_server: Any, tiny_embed_model: Path, running_workers: list[Worker]
) -> None:
    import boto3

    from worker.model import ModelRunner

    client = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url, region_name="us-east-1")
    queues = make_queues(client)
    runner = ModelRunner.load(str(tiny_embed_model), "embed", device="cpu")
    start_worker(fauxqs_server.endpoint_url, queues, runner, running_workers)
    with Client(queues.input, queues.results, endpoint_url=fauxqs_server.endpoint_url) as c:
        vectors = c.embed(["The cat sat on the mat.", "Queues decouple producers."])
        again = c.embed(["The cat sat on the mat."])
    assert [len(v) for v in vectors] == [32, 32]  # the tiny model's width
    assert again[0] == pytest.approx(vectors[0], abs=1e-6)
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)


def test_a_fifo_input_queue_takes_the_clients_requests_once_each(
    sqs_server: Any, sqs_client: Any, running_workers: list[Worker]
) -> None:
    """Every submit to a FIFO input queue was refused (MissingParameter: no MessageGroupId).
    Each request is its own group (none waits behind another's) and its own deduplication id,
    so a resend of the same request within five minutes is dropped by SQS."""
    from dataclasses import replace

    queues = make_queues(sqs_client)
    fifo = sqs_client.create_queue(
        QueueName=queues.input.rsplit("/", 1)[1] + ".fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    with Client(fifo, queues.results, endpoint_url=sqs_server.endpoint_url) as c:
        ids = c.submit_many([{"id": "same", "inputs": "one two"}, {"id": "other", "inputs": "x"}])
        assert c.submit_many([{"id": "same", "inputs": "one two"}]) == ["same"]  # a resend
        got = sqs_client.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10,
                                         AttributeNames=["MessageGroupId"], VisibilityTimeout=0)
        assert len(got["Messages"]) == 2  # the resend dropped
        groups = {m["Attributes"]["MessageGroupId"] for m in got["Messages"]}
        assert len(groups) == 2
        start_worker(sqs_server.endpoint_url, replace(queues, input=fifo), FakeRunner(),
                     running_workers)
        results = {r.id: r.outputs for r in c.results(wait_s=5, max_results=2)}
    assert results == {"same": [2], "other": [1]} and sorted(ids) == ["other", "same"]
