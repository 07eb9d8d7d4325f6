"""Settings: targets from env JSON or a YAML/JSON file; errors are one line naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaler.config import ConfigError, load_settings

TARGET = {"queue_url": "http://sqs/q", "deployment": "ml/worker"}


def test_targets_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALER_TARGETS", json.dumps([{**TARGET, "max_replicas": 7}]))
    settings = load_settings()
    target = settings.targets[0]
    assert (target.namespace, target.deployment_name, target.max_replicas) == ("ml", "worker", 7)
    assert target.policy().max_replicas == 7
    assert settings.google_auth == "wif" and settings.drain_rate_source == "cloudwatch"


def test_targets_from_yaml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        "- queue_url: http://sqs/a\n  deployment: ml/a\n  startup_delay_s: 240\n"
        "- queue_url: http://sqs/b\n  deployment: ml/b\n"
    )
    monkeypatch.setenv("SCALER_TARGETS_FILE", str(path))
    settings = load_settings()
    assert [t.deployment for t in settings.targets] == ["ml/a", "ml/b"]
    assert settings.targets[0].startup_delay_s == 240


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"SCALER_TARGETS": "[{"}, "SCALER_TARGETS: not valid JSON"),
        ({"SCALER_TARGETS": json.dumps([{**TARGET, "deployment": "worker"}])},
         "SCALER_TARGETS[0].deployment"),
        ({"SCALER_TARGETS": json.dumps([{**TARGET, "min_replicas": 5, "max_replicas": 2}])},
         "max_replicas 2 < min_replicas 5"),
        ({"SCALER_TARGETS": json.dumps([{**TARGET, "surprise": 1}])},
         "SCALER_TARGETS[0].surprise"),
        ({"SCALER_TARGETS": json.dumps([TARGET]), "SCALER_GKE_CLUSTER": "my-cluster"},
         "SCALER_GKE_CLUSTER"),
        ({"SCALER_TARGETS": json.dumps([TARGET]), "SCALER_DRAIN_RATE_SOURCE": "psychic"},
         "SCALER_DRAIN_RATE_SOURCE"),
        ({"SCALER_TARGETS": json.dumps([TARGET]),
          "SCALER_GKE_CLUSTER": "projects/p/locations/l/clusters/c",
          "SCALER_GOOGLE_AUTH": "secret"}, "SCALER_SA_KEY_SECRET_ID"),
        ({"SCALER_TARGETS_FILE": "/nonexistent/targets.yaml"}, "SCALER_TARGETS_FILE"),
        ({}, "SCALER_TARGETS"),
        # pydantic-settings ignored unknown names: the dry run asked for did not happen
        ({"SCALER_TARGETS": json.dumps([TARGET]), "SCALER_REQUEST_TIMEOUT_S": "inf"},
         "SCALER_REQUEST_TIMEOUT_S"),  # passed gt=0, then every call failed (OverflowError)
        ({"SCALER_TARGETS": json.dumps([TARGET]), "SCALER_REQUEST_TIMEOUT_S": "120"},
         "SCALER_REQUEST_TIMEOUT_S"),  # longer than the invocation
        ({"SCALER_TARGETS": json.dumps([TARGET]), "SCALER_DRYRUN": "true"},
         "SCALER_DRYRUN: not a scaler setting (did you mean SCALER_DRY_RUN?)"),
    ],
)
def test_errors_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert needle in message and "\n" not in message


ONE = json.dumps([TARGET])


def test_service_links_of_a_service_named_scaler_are_not_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCALER_TARGETS", ONE)
    monkeypatch.setenv("SCALER_PORT", "tcp://10.0.0.9:80")
    with pytest.raises(ConfigError, match=r"^SCALER_PORT: not a scaler setting"):
        load_settings()
    monkeypatch.setenv("SCALER_SERVICE_HOST", "10.0.0.9")
    monkeypatch.setenv("SCALER_PORT_80_TCP_ADDR", "10.0.0.9")
    assert load_settings().targets[0].deployment == "ml/worker"


@pytest.mark.parametrize(
    "env, files, needle",
    [
        # each of these was a traceback, or a message that named no variable or a wrong one
        ({"SCALER_TARGETS": ONE, "SCALER_LOG_LEVEL": "verbose"}, {}, "SCALER_LOG_LEVEL"),
        ({"SCALER_TARGETS_FILE": "{dir}/t.yaml"}, {"t.yaml": "targets: [a: b"},
         "SCALER_TARGETS_FILE: {dir}/t.yaml: not valid YAML"),
        ({"SCALER_TARGETS_FILE": "{dir}/t.json"}, {"t.json": "[{"},
         "SCALER_TARGETS_FILE: {dir}/t.json: not valid JSON"),
        ({"SCALER_TARGETS_FILE": "{dir}/t.json"},
         {"t.json": json.dumps([TARGET, {**TARGET, "deployment": "ml/b", "max_replicas": 0}])},
         "SCALER_TARGETS_FILE[1].max_replicas"),
        ({"SCALER_TARGETS": ONE, "SCALER_WIF_CONFIG": "{not json"}, {}, "SCALER_WIF_CONFIG"),
        ({"SCALER_TARGETS": ONE, "SCALER_WIF_CONFIG": "/nonexistent/wif.json"}, {},
         "SCALER_WIF_CONFIG"),
        # json.loads reads Infinity; a knob of inf made the decision's arithmetic NaN
        ({"SCALER_TARGETS": '[{"queue_url": "q", "deployment": "ml/a", "headroom": Infinity}]'},
         {}, "SCALER_TARGETS[0].headroom"),
        # PromQL's own braces, not doubled: KeyError in str.format, every run, every target
        ({"SCALER_TARGETS": ONE, "SCALER_PROMETHEUS_QUERY": 'sum(x{job="embed"})'}, {},
         "SCALER_PROMETHEUS_QUERY: cannot fill in"),
        ({"SCALER_TARGETS": json.dumps([{**TARGET, "prometheus_query": "rate(x{a='b'}[1m])"}])},
         {}, "SCALER_TARGETS[0].prometheus_query"),
    ],
)
def test_more_errors_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str],
    files: dict[str, str], needle: str,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("{dir}", str(tmp_path)))
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert needle.replace("{dir}", str(tmp_path)) in message and "\n" not in message, message
