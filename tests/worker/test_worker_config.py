"""Settings: defaults, env parsing, and the one-line start-up failure (run as a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.config import ConfigError, WorkerSettings, bundled_model_dir, load_settings

REPO = Path(__file__).resolve().parents[2]
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/requests"
RESULTS = "https://sqs.us-east-1.amazonaws.com/123456789012/results"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("WORKER_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WORKER_QUEUE_URL", QUEUE)
    clean_env.setenv("WORKER_RESULT_QUEUE_URL", RESULTS)
    settings = load_settings()
    assert settings.task == "embed"
    assert (settings.max_batch_size, settings.max_batch_tokens, settings.max_wait_ms) == (
        32,
        8192,
        20,
    )
    assert (settings.receivers, settings.buffer_max, settings.visibility_timeout_s) == (4, 0, 60)
    assert settings.heartbeat is True and settings.http_port == 8080
    assert (settings.encoders, settings.writers, settings.result_linger_ms) == (2, 4, 20)
    assert settings.circuit_breaker_batches == 3 and settings.require_reply_to is False
    assert settings.model == bundled_model_dir()  # the bundled MiniLM when installed
    assert settings.reply_to_patterns == ()
    assert settings.s3_bucket_prefix is None


def test_values_from_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WORKER_QUEUE_URL", QUEUE)
    clean_env.setenv("WORKER_RESULT_QUEUE_URL", RESULTS)
    clean_env.setenv("WORKER_TASK", "classify")
    clean_env.setenv("WORKER_HEARTBEAT", "false")
    clean_env.setenv(
        "WORKER_REPLY_TO_ALLOW", " https://a/123456789012/x- , arn:aws:sqs:*:1*:y-* "
    )
    clean_env.setenv("WORKER_RESULT_S3_URI", "s3://bucket/some/prefix")
    clean_env.setenv("WORKER_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.task == "classify" and settings.heartbeat is False
    assert settings.reply_to_patterns == ("https://a/123456789012/x-", "arn:aws:sqs:*:1*:y-*")
    assert settings.s3_bucket_prefix == ("bucket", "some/prefix/")
    assert settings.log_level == "DEBUG"


Q = {"WORKER_QUEUE_URL": QUEUE, "WORKER_RESULT_QUEUE_URL": RESULTS}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WORKER_RESULT_QUEUE_URL": RESULTS}, "WORKER_QUEUE_URL"),
        ({"WORKER_QUEUE_URL": "not a url", "WORKER_RESULT_QUEUE_URL": RESULTS}, "WORKER_QUEUE_URL"),
        ({"WORKER_QUEUE_URL": QUEUE}, "WORKER_RESULT_QUEUE_URL"),
        ({**Q, "WORKER_REPLY_TO_ALLOW": "team-a-*"}, "WORKER_REPLY_TO_ALLOW"),
        ({**Q, "WORKER_REPLY_TO_ALLOW": "https://sqs.x/123/q-"}, "WORKER_REPLY_TO_ALLOW"),
        ({**Q, "WORKER_TASK": "translate"}, "WORKER_TASK"),
        ({**Q, "WORKER_MAX_BATCH_SIZE": "0"}, "WORKER_MAX_BATCH_SIZE"),
        ({**Q, "WORKER_RECEIVERS": "many"}, "WORKER_RECEIVERS"),
        ({**Q, "WORKER_RECEIVERS": "8", "WORKER_MAX_RECEIVERS": "4"}, "WORKER_MAX_RECEIVERS"),
        ({**Q, "WORKER_WRITERS": "8", "WORKER_MAX_WRITERS": "4"}, "WORKER_MAX_WRITERS"),
        ({**Q, "WORKER_RESULT_S3_URI": "http://x"}, "WORKER_RESULT_S3_URI"),
        ({**Q, "WORKER_VISIBILITY_TIMEOUT_S": "99999"}, "WORKER_VISIBILITY_"),
    ],
)
def test_bad_setting_names_the_variable(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(variable)
    assert "\n" not in str(info.value)


def test_a_model_path_that_cannot_be_read_is_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """Path.exists raises for a name too long, or a directory the worker's (non-root) user
    may not enter: that escaped as a traceback with exit code 1."""
    clean_env.setenv("WORKER_QUEUE_URL", QUEUE)
    clean_env.setenv("WORKER_RESULT_QUEUE_URL", RESULTS)
    clean_env.setenv("WORKER_MODEL", "/tmp/" + "m" * 300)  # ENAMETOOLONG
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("WORKER_MODEL: cannot read")
    assert "\n" not in str(info.value)


def test_no_result_queue_is_allowed_only_when_every_request_must_name_a_reply_to(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """Without a result queue, a request without reply_to had its result nowhere: the old worker
    ran it and deleted it anyway. Now that takes an explicit WORKER_REQUIRE_REPLY_TO=true."""
    clean_env.setenv("WORKER_QUEUE_URL", QUEUE)
    with pytest.raises(ConfigError, match="WORKER_RESULT_QUEUE_URL: required"):
        load_settings()
    clean_env.setenv("WORKER_REQUIRE_REPLY_TO", "true")
    settings = load_settings()
    assert settings.result_queue_url is None and settings.require_reply_to


def test_a_misspelt_setting_fails_at_start_naming_it_and_the_nearest(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """pydantic-settings ignores names it does not know: WORKER_MAX_BATCH=64 left the default of
    32 in force, silently. Now it is refused, with the setting that was probably meant."""
    clean_env.setenv("WORKER_QUEUE_URL", QUEUE)
    clean_env.setenv("WORKER_RESULT_QUEUE_URL", RESULTS)
    clean_env.setenv("WORKER_MAX_BATCH", "64")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "WORKER_MAX_BATCH: not a worker setting (did you mean WORKER_MAX_BATCH_SIZE?)"
    )
    clean_env.delenv("WORKER_MAX_BATCH")
    clean_env.setenv("WORKER_COMPLETELY_UNRELATED_THING", "1")
    with pytest.raises(ConfigError, match=r"^WORKER_COMPLETELY_UNRELATED_THING: not a worker "
                       r"setting$"):
        load_settings()


def test_kubernetes_service_links_for_a_service_named_worker_are_not_settings(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A Service named `worker` in the namespace gives every pod WORKER_SERVICE_HOST,
    WORKER_PORT, WORKER_PORT_8080_TCP_ADDR…; those are not misspelt settings. A `_PORT` name with
    no `<S>_SERVICE_HOST` beside it is still refused."""
    clean_env.setenv("WORKER_QUEUE_URL", QUEUE)
    clean_env.setenv("WORKER_RESULT_QUEUE_URL", RESULTS)
    clean_env.setenv("WORKER_METRICS_PORT", "9090")
    with pytest.raises(ConfigError, match=r"^WORKER_METRICS_PORT: not a worker setting"):
        load_settings()
    clean_env.delenv("WORKER_METRICS_PORT")
    links = {
        "WORKER_SERVICE_HOST": "10.0.0.7",
        "WORKER_SERVICE_PORT": "8080",
        "WORKER_SERVICE_PORT_HTTP": "8080",
        "WORKER_PORT": "tcp://10.0.0.7:8080",
        "WORKER_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "WORKER_PORT_8080_TCP_ADDR": "10.0.0.7",
        "WORKER_GPU_SERVICE_HOST": "10.0.0.8",
        "WORKER_GPU_PORT_80_TCP_PROTO": "tcp",
    }
    for key, value in links.items():
        clean_env.setenv(key, value)
    assert load_settings().max_batch_size == 32


def _run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker"],
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "WORKER_QUEUE_URL"),
        ({**Q, "WORKER_MAX_WAIT_MS": "soon"}, "WORKER_MAX_WAIT_MS"),
        ({**Q, "WORKER_RECIEVERS": "8"}, "WORKER_RECIEVERS: not a worker setting"),
        ({**Q, "WORKER_SHUTDOWN_TIMEOUT_S": "inf"}, "WORKER_SHUTDOWN_TIMEOUT_S"),
    ],
)
def test_process_exits_2_with_one_line_and_no_traceback(env: dict[str, str], variable: str) -> None:
    done = _run_worker(env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr


def test_help_lists_the_settings_and_starts_nothing(fauxqs_server: Any) -> None:
    """`gpuqueue-worker --help` on a configured pod ignored the flag and started a second
    consumer of the queue."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url, region_name="us-east-1")
    queue = sqs.create_queue(QueueName="help-requests")["QueueUrl"]
    env = {"WORKER_QUEUE_URL": queue, "WORKER_RESULT_QUEUE_URL": queue,
           "AWS_ENDPOINT_URL": fauxqs_server.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    done = subprocess.run([sys.executable, "-m", "worker", "--help"], env={**base, **env},
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "WORKER_MAX_BATCH_SIZE" in done.stdout
    assert "started" not in done.stderr
    other = subprocess.run([sys.executable, "-m", "worker", "--queue", queue],
                           env={**base, **env}, cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert other.returncode == 2 and "unrecognized arguments" in other.stderr


def test_process_names_a_queue_that_does_not_exist(fauxqs_server) -> None:  # type: ignore[no-untyped-def]
    missing = f"{fauxqs_server.endpoint_url}/000000000000/no-such-queue"
    done = _run_worker(
        {
            "WORKER_QUEUE_URL": missing,
            "WORKER_RESULT_QUEUE_URL": missing + "-results",
            "AWS_ENDPOINT_URL": fauxqs_server.endpoint_url,
            "WORKER_HTTP_PORT": "0",
        }
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "WORKER_QUEUE_URL" in last and "Traceback" not in done.stderr


def test_process_refuses_the_input_queue_as_its_result_queue(fauxqs_server: Any) -> None:
    import boto3

    client = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)
    queue = client.create_queue(QueueName="cfg-same-queue")["QueueUrl"]
    done = _run_worker(
        {
            "WORKER_QUEUE_URL": queue,
            "WORKER_RESULT_QUEUE_URL": queue,
            "AWS_ENDPOINT_URL": fauxqs_server.endpoint_url,
            "WORKER_HTTP_PORT": "0",
        }
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "WORKER_RESULT_QUEUE_URL: is the input queue" in line


def test_settings_are_immutable() -> None:
    settings = WorkerSettings(queue_url=QUEUE, result_queue_url=RESULTS)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        settings.task = "generate"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "variable", "needle"),
    [
        ({"WORKER_MODEL": "/nonexistent/model-dir"}, "WORKER_MODEL", ""),
        ({"WORKER_DEVICE": "cuda"}, "WORKER_DEVICE", ""),
        ({"WORKER_MAX_INPUT_TOKENS": "100000"}, "WORKER_MAX_INPUT_TOKENS", ""),
        # the bundled MiniLM has no classification layer: transformers made a random one and
        # only warned, and the worker answered every request with a random label
        ({"WORKER_TASK": "classify"}, "WORKER_MODEL", "classifier.weight"),
    ],
)
def test_process_names_a_model_setting_that_cannot_work(
    fauxqs_server: Any, env: dict[str, str], variable: str, needle: str
) -> None:
    if variable == "WORKER_DEVICE" and _cuda_available():
        pytest.skip("this machine has CUDA, so WORKER_DEVICE=cuda is valid")
    import boto3

    client = boto3.client("sqs", endpoint_url=fauxqs_server.endpoint_url)
    name = f"cfg-{variable.lower().replace('_', '-')}"
    queue = client.create_queue(QueueName=name)["QueueUrl"]
    results = client.create_queue(QueueName=name + "-results")["QueueUrl"]
    done = _run_worker(
        {
            "WORKER_QUEUE_URL": queue,
            "WORKER_RESULT_QUEUE_URL": results,
            "AWS_ENDPOINT_URL": fauxqs_server.endpoint_url,
            "WORKER_HTTP_PORT": "0",
            **env,
        }
    )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gpuqueue-worker: configuration error: {variable}"), last
    assert needle in last
    assert "Traceback" not in done.stderr


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def test_process_names_aws_default_region_when_no_region_is_set() -> None:
    """boto3 reads AWS_DEFAULT_REGION, not AWS_REGION: the error names the one that works."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WORKER_") and k not in ("AWS_DEFAULT_REGION", "AWS_REGION")
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker"],
        env={
            **base,
            "WORKER_QUEUE_URL": QUEUE,
            "WORKER_RESULT_QUEUE_URL": RESULTS,
            "AWS_REGION": "eu-west-1",  # set, and still no region for boto3
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",  # no profile region either
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("gpuqueue-worker: configuration error: AWS_DEFAULT_REGION"), line


def test_process_refuses_an_sqs_endpoint_with_a_path() -> None:
    """Every SQS call goes to POST / and is signed so: AWS_ENDPOINT_URL=http://gw/sqs/ had its
    /sqs/ prefix dropped without a word (boto3 keeps it). Refused at start instead."""
    done = _run_worker({**Q, "AWS_ENDPOINT_URL": "http://127.0.0.1:9/sqs-gateway/"})
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("gpuqueue-worker: configuration error: AWS_ENDPOINT_URL"), line
    assert "with a path" in line
