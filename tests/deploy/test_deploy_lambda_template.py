"""The scaler's SAM template: aws-sam-translator expands it, moto's CloudFormation creates it.

moto creates the resources (function, role and its policy, schedule rule, log group) but runs
no Lambda code, and its CloudFormation does not model CloudWatch alarms or EventInvokeConfig:
those are checked in the transformed template instead. What the scaler code does is tested in
tests/scaler; here it is what AWS is told to build.
"""

from __future__ import annotations

import ast
import io
import json
import time
import zipfile
from typing import Any

import boto3
import pytest
from deploy_helpers import REPO

from worker.devsqs import LocalServer

TEMPLATE = REPO / "deploy" / "lambda" / "template.yaml"
BUCKET = "gpuqueue-deploy-artifacts"
QUEUE_ARNS = (
    "arn:aws:sqs:us-east-1:123456789012:embed-requests,"
    "arn:aws:sqs:us-east-1:123456789012:classify"
)


def transformed() -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(TEMPLATE.read_text())
    # what `sam package` does: the local zip becomes an S3 object
    template["Resources"]["ScalerFunction"]["Properties"]["CodeUri"] = {
        "Bucket": BUCKET, "Key": "scaler.zip"
    }

    class NoManagedPolicies:  # the template uses none (its role is spelled out)
        def load(self) -> dict[str, str]:
            return {}

    result: dict[str, Any] = transform(template, {}, NoManagedPolicies())
    return result


@pytest.fixture(scope="module")
def cfn_template() -> dict[str, Any]:
    return transformed()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_code_uri_is_the_lambda_zip() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation short forms (!Ref ...) as plain values: only the structure matters here
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    raw = yaml.load(TEMPLATE.read_text(), Loader=Loader)
    props = raw["Resources"]["ScalerFunction"]["Properties"]
    zip_path = (TEMPLATE.parent / props["CodeUri"]).resolve()
    assert zip_path == REPO / "build" / "lambda" / "scaler.zip"


def test_function_schedule_and_invoke_config(cfn_template: dict[str, Any]) -> None:
    (function,) = resources_of(cfn_template, "AWS::Lambda::Function").values()
    props = function["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "scaler.handler.handler"
    assert props["Timeout"] < 60  # one run never overlaps the next tick
    assert props["ReservedConcurrentExecutions"] == 1
    (rule,) = resources_of(cfn_template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    (invoke,) = resources_of(cfn_template, "AWS::Lambda::EventInvokeConfig").values()
    assert invoke["Properties"]["MaximumRetryAttempts"] == 0
    assert set(props["Environment"]["Variables"]) == {
        "SCALER_TARGETS", "SCALER_GKE_CLUSTER", "SCALER_GOOGLE_AUTH", "SCALER_WIF_CONFIG",
        "SCALER_SA_KEY_SECRET_ID", "SCALER_DRAIN_RATE_SOURCE", "SCALER_RUNS_PER_INVOCATION",
    }


def test_alarms_on_errors_throttles_and_the_queues(cfn_template: dict[str, Any]) -> None:
    alarms = resources_of(cfn_template, "AWS::CloudWatch::Alarm").values()
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert metrics == {
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),  # the dead-letter queue
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
    }
    (log_group,) = resources_of(cfn_template, "AWS::Logs::LogGroup").values()
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_scaler_settings_are_the_scaler_s() -> None:
    """Every SCALER_* the template sets is a field of the scaler's settings."""
    from scaler.config import Settings

    assert Settings.model_config.get("env_prefix") == "SCALER_"
    known = {f"SCALER_{name.upper()}" for name in Settings.model_fields}
    (function,) = resources_of(transformed(), "AWS::Lambda::Function").values()
    assert set(function["Properties"]["Environment"]["Variables"]) <= known


def _client(server: LocalServer, service: str) -> Any:
    return boto3.client(service, endpoint_url=server.endpoint_url, region_name="us-east-1")


def _create_stack(server: LocalServer, name: str, params: dict[str, str]) -> dict[str, Any]:
    s3 = _client(server, "s3")
    s3.create_bucket(Bucket=BUCKET)
    # moto stores the code but never runs it; a stand-in handler is enough for the stack
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("scaler/__init__.py", "")
        archive.writestr("scaler/handler.py", "def handler(event, context):\n    return None\n")
    s3.put_object(Bucket=BUCKET, Key="scaler.zip", Body=code.getvalue())
    cfn = _client(server, "cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(transformed()),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        time.sleep(0.2)
    raise AssertionError(f"stack {name} still in progress after 60 s")


def _role_policy(server: LocalServer, role: str) -> list[dict[str, Any]]:
    iam = _client(server, "iam")
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):  # moto hands back the CloudFormation dict as its repr
        document = ast.literal_eval(document)
    # CloudFormation drops list items that resolve to AWS::NoValue; moto keeps them as null
    return [s for s in document["Statement"] if s is not None]


BASE_PARAMS = {
    "ScalerTargets": json.dumps([{"queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/embed-requests",
                                  "deployment": "gpuqueue/gpuqueue-worker"}]),
    "QueueArns": QUEUE_ARNS,
    "GkeCluster": "projects/team-a-prod/locations/europe-west4/clusters/gpu",
    "DeadLetterQueueName": "embed-requests-dlq",
    "RequestQueueName": "embed-requests",
}


def test_stack_creates_with_least_privilege_in_wif_mode(moto_server: LocalServer) -> None:
    params = {**BASE_PARAMS, "GoogleAuth": "wif",
              "WifCredentialConfig": json.dumps({"type": "external_account",
                                                 "audience": "//iam.googleapis.com/projects/1/x"})}
    stack = _create_stack(moto_server, "gq-wif", params)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")

    config = _client(moto_server, "lambda").get_function_configuration(FunctionName="gq-wif-scaler")
    assert config["Runtime"] == "python3.12"
    assert config["Handler"] == "scaler.handler.handler"
    env = config["Environment"]["Variables"]
    assert env["SCALER_GOOGLE_AUTH"] == "wif"
    assert json.loads(env["SCALER_WIF_CONFIG"])["type"] == "external_account"
    assert env["SCALER_SA_KEY_SECRET_ID"] == ""

    rules = _client(moto_server, "events").list_rules()["Rules"]
    schedules = [r["ScheduleExpression"] for r in rules if r["Name"].startswith("gq-wif-")]
    assert schedules == ["rate(1 minute)"]
    logs = _client(moto_server, "logs")
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/gq-wif")
    assert [g["retentionInDays"] for g in groups["logGroups"]] == [30]

    statements = _role_policy(moto_server, "gq-wif-scaler")
    actions = {s["Sid"]: s["Action"] for s in statements}
    assert actions == {
        "WriteOwnLogsOnly": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "ReadBacklogOfNamedQueues": "sqs:GetQueueAttributes",
        "ReadDrainRateMetrics": "cloudwatch:GetMetricData",
    }
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ReadBacklogOfNamedQueues"]["Resource"] == QUEUE_ARNS.split(",")
    # the only "*": GetMetricData has no resource-level permissions
    assert [s["Sid"] for s in statements if s["Resource"] == "*"] == ["ReadDrainRateMetrics"]
    assert not any("secretsmanager" in json.dumps(s) for s in statements)


def test_key_mode_may_read_exactly_one_secret(moto_server: LocalServer) -> None:
    params = {**BASE_PARAMS, "GoogleAuth": "secret", "SaKeySecretName": "gpuqueue/gke-scaler-key",
              "DrainRateSource": "prior"}
    stack = _create_stack(moto_server, "gq-key", params)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    by_sid = {s["Sid"]: s for s in _role_policy(moto_server, "gq-key-scaler")}
    secret = by_sid["ReadTheOneServiceAccountKey"]
    assert secret["Action"] == "secretsmanager:GetSecretValue"
    assert secret["Resource"] == (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:gpuqueue/gke-scaler-key-??????"
    )
    # drain rate from the prior: no CloudWatch read at all
    assert "ReadDrainRateMetrics" not in by_sid
    env = _client(moto_server, "lambda").get_function_configuration(
        FunctionName="gq-key-scaler")["Environment"]["Variables"]
    assert env["SCALER_SA_KEY_SECRET_ID"] == "gpuqueue/gke-scaler-key"
