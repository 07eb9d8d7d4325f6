"""The `gpuqueue` command's bad input and failures, against fauxqs: each is one line on stderr
naming what is wrong (the file and line, or the option) with its documented exit code, never a
traceback, and nothing is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_gpuqueue_cli import gq, name, visible


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    assert line.startswith("gpuqueue: ")
    return line


def test_embed_on_a_queue_that_does_not_exist_exits_3_in_one_line(
    fauxqs: tuple[str, Any],
) -> None:
    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    missing = queue.rsplit("/", 1)[0] + "/" + name("nope")
    done = gq(endpoint, "embed", "--queue", missing, "--timeout-s", "2", "hello")
    assert done.returncode == 3, done.stderr
    assert "NonExistentQueue" in one_line(done.stderr)


BAD_FILES = {
    # an invalid request on the file's line 3 (line 2 blank): it was "request 1"
    "invalid-after-blank": (b'{"inputs": "fine"}\n\n{"inputs": "x", "ttl_s": -5}\n', ":3: ttl_s"),
    "not-a-string": (b'{"inputs": 123}\n', ":1: inputs"),
    "not-utf8": (b'{"inputs": "ok"}\n{"inputs": "\xff\xfe"}\n', ":2: not UTF-8 (byte 0xff)"),
    "nested-deeply": (b'{"inputs": "ok"}\n' + b"[" * 100_000 + b"\n", ":2: JSON nested too deeply"),
    "lone-surrogate": (
        b'{"inputs": "ok"}\n{"inputs": ["fine", "lone \\ud800 surrogate"]}\n',
        ":2: inputs.1: a lone surrogate",
    ),
    # U+2028 is text inside a JSON string, not a line break: the next line is still line 2
    "line-separator-in-text": (
        '{"inputs": "a\u2028b"}\n{"inputs": "x", "ttl_s": -1}\n'.encode(), ":2: ttl_s"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_naming_its_line(
    case: str, fauxqs: tuple[str, Any], tmp_path: Path
) -> None:
    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    content, expected = BAD_FILES[case]
    file = tmp_path / "requests.jsonl"
    file.write_bytes(content)
    done = gq(endpoint, "submit", "--queue", queue, "--file", str(file))
    assert done.returncode == 2, done.stderr
    assert f"{file}{expected}" in one_line(done.stderr)
    assert visible(sqs, queue) == 0


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [("not json", "--parameters: not JSON"), ("[1, 2]", "--parameters: a JSON object, not list"),
     ("[" * 100_000, "--parameters: JSON nested too deeply")],
)
def test_bad_parameters_are_one_line_naming_the_option(
    parameters: str, expected: str, fauxqs: tuple[str, Any]
) -> None:
    endpoint, sqs = fauxqs
    queue = sqs.create_queue(QueueName=name("gq-in"))["QueueUrl"]
    done = gq(endpoint, "submit", "--queue", queue, "--parameters", parameters, "x")
    assert done.returncode == 2, done.stderr
    assert expected in one_line(done.stderr)
    assert visible(sqs, queue) == 0
