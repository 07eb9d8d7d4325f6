"""The `gpuqueue` command run as a subprocess (the installed console script) against real local
servers: fauxqs for SQS, moto for CloudWatch, and for `dlq redrive` a stand-in for the one call
neither emulator implements (StartMessageMoveTask) in front of fauxqs. Exit codes as documented."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from move_task_standin import MoveTaskStandIn

from worker.contract.result import build_result, result_message

REGION = "us-east-1"
SCRIPT = Path(sys.executable).with_name("gpuqueue")


def gq(endpoint: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def with_dlq(sqs: Any) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName=name("gq-dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    source = sqs.create_queue(QueueName=name("gq-in"), Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "3"})
    })["QueueUrl"]
    return source, dlq


def visible(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


@pytest.mark.parametrize(
    "command",
    [[], ["submit"], ["results"], ["embed"], ["dlq"], ["dlq", "peek"], ["dlq", "redrive"],
     ["stats"], ["sweep"]],
)
def test_help_everywhere(command: list[str]) -> None:
    done = gq("http://127.0.0.1:1", *command, "--help")
    assert done.returncode == 0 and "usage: gpuqueue" in done.stdout
    if not command:
        assert "exit codes: 0 done, 1 something failed, 2 usage" in done.stdout


def test_submit_then_read_results_as_json(fauxqs: tuple[str, Any], tmp_path: Path) -> None:
    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    done = gq(endpoint, "submit", "--queue", queue, "--ttl-s", "60", "--json", "one", "two")
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)["ids"]
    assert len(ids) == 2
    file = tmp_path / "requests.jsonl"
    lines = [json.dumps({"inputs": [f"t{i}"], "id": f"f{i}"}) for i in range(60)]
    file.write_text("\n".join([*lines, json.dumps("a plain text"), ""]))
    done = gq(endpoint, "submit", "--queue", queue, "--file", str(file))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["f0", "f1"] and len(done.stdout.split()) == 61
    assert visible(sqs, queue) == 63

    results = sqs.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    for i, request_id in enumerate(ids):
        message = result_message(build_result(message_id=f"m{i}", request_id=request_id,
                                              model="m", outputs=[[0.5, i]]))
        sqs.send_message(QueueUrl=results, MessageBody=message.body,
                         MessageAttributes=message.attributes)
    done = gq(endpoint, "results", "--queue", results, "--json", "--wait-s", "1")
    assert done.returncode == 0, done.stderr
    read = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["id"] for r in read) == sorted(ids)
    assert visible(sqs, results) == 0  # read results are deleted


def test_usage_and_aws_errors_have_their_exit_codes(
    fauxqs: tuple[str, Any], tmp_path: Path
) -> None:
    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    nothing = gq(endpoint, "submit", "--queue", queue)
    assert nothing.returncode == 2 and "nothing to submit" in nothing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": "fine"}\n{not json\n')
    broken = gq(endpoint, "submit", "--queue", queue, "--file", str(bad))
    assert broken.returncode == 2 and "bad.jsonl:2: not JSON" in broken.stderr
    invalid = gq(endpoint, "submit", "--queue", queue, "--ttl-s", "-5", "x")
    assert invalid.returncode == 2 and "ttl_s" in invalid.stderr
    assert visible(sqs, queue) == 0  # nothing was sent by any of them
    missing = queue.rsplit("/", 1)[0] + "/" + name("nope")
    gone = gq(endpoint, "stats", "--queue", missing)
    assert gone.returncode == 3 and "gpuqueue:" in gone.stderr
    refused = gq(endpoint, "submit", "--queue", missing, "--json", "x")
    assert refused.returncode == 1 and json.loads(refused.stdout)["sent"] == []
    unreachable = gq("http://127.0.0.1:9", "stats", "--queue", queue, timeout=120)
    assert unreachable.returncode == 3


def test_embed_without_a_worker_times_out_with_exit_code_4(fauxqs: tuple[str, Any]) -> None:
    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    before = set(sqs.list_queues(QueueNamePrefix="gpuqueue-reply-").get("QueueUrls", []))
    done = gq(endpoint, "embed", "--queue", queue, "--timeout-s", "1", "hello")
    assert done.returncode == 4 and "not received within 1 s" in done.stderr
    [request] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    reply_to = json.loads(request["Body"])["reply_to"]
    assert "/gpuqueue-reply-" in reply_to and json.loads(request["Body"])["ttl_s"] == 1
    # its temporary reply queue was deleted on the way out
    after = set(sqs.list_queues(QueueNamePrefix="gpuqueue-reply-").get("QueueUrls", []))
    assert after <= before


def test_dlq_peek_ends_before_the_first_messages_come_round_again(
    fauxqs: tuple[str, Any]
) -> None:
    """A pass over a DLQ deeper than one peek can read within the 30 s hold: the first messages
    came visible again, no receive was ever empty, and `dlq peek --max` above the depth never
    ended (each round adding to every message's receive count). Here each receive takes 2 s
    of a clock the test moves."""
    from gpuqueue import admin

    _, sqs = fauxqs
    _, dlq = with_dlq(sqs)
    for start in range(0, 300, 10):
        sqs.send_message_batch(QueueUrl=dlq, Entries=[
            {"Id": str(i), "MessageBody": f"dead {start + i}"} for i in range(10)
        ])
    now = [0.0]

    def clock() -> float:
        now[0] += 2.0  # asked once per receive
        return now[0]

    peeked = admin.peek(sqs, dlq, max_messages=1000, clock=clock)
    assert 0 < len(peeked) < 300 and len({p.message_id for p in peeked}) == len(peeked)
    assert now[0] <= admin.PEEK_HOLD_S + 2.0
    assert visible(sqs, dlq) == 300  # all put straight back


def test_dlq_peek_leaves_messages_and_redrive_moves_them_back(fauxqs: tuple[str, Any]) -> None:
    endpoint, sqs = fauxqs
    source, dlq = with_dlq(sqs)
    for i in range(5):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"inputs": f"dead {i}"}))
    peek = gq(endpoint, "dlq", "peek", "--queue", source, "--json", "--max", "3")
    assert peek.returncode == 0, peek.stderr
    peeked = json.loads(peek.stdout)
    assert peeked["dlq"] == dlq and len(peeked["messages"]) == 3
    assert visible(sqs, dlq) == 5  # peeking put them straight back

    standin = MoveTaskStandIn(endpoint)
    try:
        done = gq(standin.endpoint_url, "dlq", "redrive", "--queue", source, "--json",
                  "--interval-s", "0.2")
    finally:
        standin.stop()
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "COMPLETED" and final["moved"] == 5 and final["to_move"] == 5
    [started] = standin.started
    arn = lambda url: sqs.get_queue_attributes(  # noqa: E731
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert started["SourceArn"] == arn(dlq) and started["DestinationArn"] == arn(source)
    assert (visible(sqs, source), visible(sqs, dlq)) == (5, 0)


@pytest.fixture
def moto(moto_server: Any) -> Iterator[tuple[str, Any]]:
    endpoint = moto_server.endpoint_url
    yield endpoint, boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)


def test_stats_reads_counts_and_the_oldest_age_from_cloudwatch(moto: tuple[str, Any]) -> None:
    endpoint, sqs = moto
    source, dlq = with_dlq(sqs)
    sqs.send_message(QueueUrl=source, MessageBody="x")
    sqs.send_message(QueueUrl=dlq, MessageBody="y")
    done = gq(endpoint, "stats", "--queue", source, "--json")
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["visible"], row["in_flight"], row["dlq"]["visible"]) == (1, 0, 1)
    assert row["oldest_age_s"] is None and "no CloudWatch data" in row["oldest_age_note"]
    cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint, region_name=REGION)
    cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateAgeOfOldestMessage", "Value": 42.0, "Unit": "Seconds",
        "Dimensions": [{"Name": "QueueName", "Value": source.rsplit("/", 1)[1]}],
        "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
    }])
    [row] = json.loads(gq(endpoint, "stats", "--queue", source, "--json").stdout)
    assert row["oldest_age_s"] == 42.0


def test_a_submit_that_fails_part_way_names_the_lines_sent_and_not(
    fauxqs: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The failure report gave ids only, and uuid4s made up for lines without an "id" appear
    nowhere in the file: a user could not tell which lines to send again, and resending the
    file sent the rest twice. Here the queue takes 1 KiB while the client assumes 256 KiB
    (its GetQueueAttributes refused), so the call carrying the last five lines is refused."""
    from gpuqueue import cli
    from gpuqueue.client import Client

    endpoint, sqs = fauxqs
    queue = sqs.create_queue(
        QueueName=name("gq-in"), Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    monkeypatch.setattr(Client, "max_message_size", lambda self: 262144)
    lines = [json.dumps({"inputs": f"line {n}"}) for n in range(1, 21)]
    lines.insert(10, "")  # a blank line: skipped, but the numbers stay the file's
    lines += [json.dumps({"inputs": "x" * 2000}) for _ in range(5)]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    code = cli.main(["submit", "--queue", queue, "--file", str(requests), "--json",
                     "--endpoint-url", endpoint])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["sent"]) == 20 and len(report["failed"]) == 5
    assert sorted(report["lines"][i] for i in report["failed"]) == [
        f"{requests}:{n}" for n in range(22, 27)
    ]
    assert f"{requests}:12" in {report["lines"][i] for i in report["sent"]}
    assert visible(sqs, queue) == 20


def test_ctrl_c_during_a_submit_reports_what_went_out(
    fauxqs: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """KeyboardInterrupt went straight to exit 130 with nothing said: 110 of 400 requests were
    on the queue and nothing named them, so a rerun sent them twice."""
    from gpuqueue.client import Client
    from gpuqueue.errors import SubmitInterrupted

    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    client = Client(queue, endpoint_url=endpoint)
    real = client.sqs.send_message_batch
    calls = []

    def interrupted_on_the_third(**kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(**kw)

    monkeypatch.setattr(client.sqs, "send_message_batch", interrupted_on_the_third)
    with pytest.raises(SubmitInterrupted) as info:
        client.submit_many(f"text {i}" for i in range(40))
    assert isinstance(info.value, KeyboardInterrupt)  # `except Exception` does not swallow it
    assert len(info.value.sent) == 20 and len(info.value.failed) == 20
    assert info.value.ids[:20] == sorted(info.value.sent, key=info.value.ids.index)
    reasons = {info.value.failed[i] for i in info.value.ids[20:30]}
    assert reasons == {"interrupted while being sent: it may have reached the queue"}
    assert {info.value.failed[i] for i in info.value.ids[30:]} == {"interrupted before it was sent"}
    assert visible(sqs, queue) == 20


def test_results_not_written_stay_on_the_queue(fauxqs: tuple[str, Any]) -> None:
    """stdout full (or closed): the generator closed, and its cleanup deleted the result whose
    line had just failed to be written, then a traceback."""
    endpoint, sqs = fauxqs
    results = sqs.create_queue(QueueName=name("gq-out"))["QueueUrl"]
    for i in range(3):
        message = result_message(build_result(message_id=f"m{i}", request_id=f"r{i}",
                                              model="m", outputs=[[1.0]]))
        sqs.send_message(QueueUrl=results, MessageBody=message.body,
                         MessageAttributes=message.attributes)
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION}
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(SCRIPT), "results", "--queue", results, "--json",
                               "--wait-s", "1"], env=env, stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == 1
    assert "left on the queue" in done.stderr and "Traceback" not in done.stderr
    assert visible(sqs, results) == 3


def test_sweep_deletes_only_expired_reply_queues(fauxqs: tuple[str, Any]) -> None:
    endpoint, sqs = fauxqs
    prefix = name("gq-sweep") + "-"
    sqs.create_queue(QueueName=prefix + "old", tags={"gpuqueue:expires-at": "1"})
    sqs.create_queue(QueueName=prefix + "new", tags={"gpuqueue:expires-at": "99999999999"})
    dry = gq(endpoint, "sweep", "--prefix", prefix, "--dry-run")
    assert dry.returncode == 0 and "expired (dry run)" in dry.stdout
    done = gq(endpoint, "sweep", "--prefix", prefix, "--json")
    assert done.returncode == 0, done.stderr
    state = {s["queue_url"].rsplit("/", 1)[1]: s["deleted"] for s in json.loads(done.stdout)}
    assert state == {prefix + "old": True, prefix + "new": False}


def test_a_queue_deleted_during_the_sweep_does_not_stop_it(fauxqs: tuple[str, Any]) -> None:
    """A reply queue closed by its client (or by another sweep) between ListQueues and
    ListQueueTags raised NonExistentQueue out of the sweep: the expired queues after it were
    left, and the command exited 3."""
    from gpuqueue.reply_queue import sweep

    _, sqs = fauxqs
    prefix = name("gq-race") + "-"
    urls = [sqs.create_queue(QueueName=f"{prefix}{i}", tags={"gpuqueue:expires-at": "1"})
            ["QueueUrl"] for i in range(3)]

    class ClosedMeanwhile:
        """The SQS client; the first queue is deleted just before its tags are asked."""

        def __getattr__(self, attribute: str) -> Any:
            return getattr(sqs, attribute)

        def list_queue_tags(self, QueueUrl: str) -> Any:  # boto3 spells it so
            if QueueUrl == urls[0]:
                sqs.delete_queue(QueueUrl=QueueUrl)
            return sqs.list_queue_tags(QueueUrl=QueueUrl)

    swept = sweep(ClosedMeanwhile(), prefix=prefix)
    assert sorted(s.queue_url for s in swept if s.deleted) == sorted(urls[1:])
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []
