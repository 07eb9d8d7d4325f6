"""Queue operations for the CLI: the dead-letter queue (peek, redrive with SQS's
StartMessageMoveTask) and queue statistics (counts from GetQueueAttributes, the oldest message's
age from CloudWatch when it can be read). boto3 clients are passed in."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from worker.errors import error_code

COUNTS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
PEEK_HOLD_S = 30  # peeked messages are hidden this long at most, then put straight back
PEEK_MARGIN_S = 5  # a peek stops this long before the first messages' hold ends
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED"}


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def url_of_arn(sqs: Any, arn: str) -> str:
    """A queue's URL from its ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    return str(sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"])


def dead_letter_url(sqs: Any, queue_url: str) -> str:
    """The DLQ of `queue_url`, from its RedrivePolicy; ValueError when it has none."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise ValueError(f"{queue_url} has no RedrivePolicy: no dead-letter queue to use")
    return url_of_arn(sqs, json.loads(policy)["deadLetterTargetArn"])


# ---------------------------------------------------------------------------------- peek


@dataclass(frozen=True)
class Peeked:
    message_id: str
    receive_count: int
    sent_at: str | None
    body: str


def peek(
    sqs: Any, dlq_url: str, max_messages: int, clock: Callable[[], float] = time.monotonic
) -> list[Peeked]:
    """Up to `max_messages` messages of the DLQ, left there: each receive hides them for
    PEEK_HOLD_S, and they are made visible again at the end. It stops at a receive that brings
    nothing new, and before the first messages' hold runs out (past it they come round again:
    on a DLQ deeper than one pass could read, --max above its depth never ended, and every
    round added to each message's receive count)."""
    seen: dict[str, Peeked] = {}
    handles: dict[str, str] = {}  # the latest receipt handle of each: the one SQS honours
    stop_at = clock() + PEEK_HOLD_S - PEEK_MARGIN_S
    try:
        while len(seen) < max_messages and clock() < stop_at:
            response = sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=min(10, max_messages - len(seen)),
                VisibilityTimeout=PEEK_HOLD_S, WaitTimeSeconds=1,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
            messages = response.get("Messages", [])
            new = [m for m in messages if m["MessageId"] not in seen]
            for m in messages:
                handles[m["MessageId"]] = m["ReceiptHandle"]
            if not new:
                break
            for m in new:
                attrs = m.get("Attributes", {})
                sent = attrs.get("SentTimestamp")
                seen[m["MessageId"]] = Peeked(
                    m["MessageId"], int(attrs.get("ApproximateReceiveCount", 0)),
                    _iso(int(sent) / 1000) if sent else None, m.get("Body", ""),
                )
    finally:
        held = list(handles.values())
        for start in range(0, len(held), 10):
            sqs.change_message_visibility_batch(QueueUrl=dlq_url, Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(held[start : start + 10])
            ])
    return list(seen.values())


# ---------------------------------------------------------------------------------- redrive


@dataclass
class MoveStatus:
    status: str
    moved: int
    to_move: int | None
    failure: str | None = None
    task_handle: str | None = None


def start_redrive(
    sqs: Any, dlq_arn: str, destination_arn: str | None, rate: int | None
) -> str:
    """StartMessageMoveTask from the DLQ (to `destination_arn`, or each message's original
    source when None); returns the task handle."""
    params: dict[str, Any] = {"SourceArn": dlq_arn}
    if destination_arn:
        params["DestinationArn"] = destination_arn
    if rate:
        params["MaxNumberOfMessagesPerSecond"] = rate
    return str(sqs.start_message_move_task(**params)["TaskHandle"])


def redrive_status(sqs: Any, dlq_arn: str) -> MoveStatus:
    """The most recent move task of the DLQ (ListMessageMoveTasks)."""
    results = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
    if not results:
        return MoveStatus("UNKNOWN", 0, None)
    r = results[0]
    to_move = r.get("ApproximateNumberOfMessagesToMove")
    return MoveStatus(
        r.get("Status", "UNKNOWN"), int(r.get("ApproximateNumberOfMessagesMoved", 0)),
        int(to_move) if to_move is not None else None, r.get("FailureReason"),
        r.get("TaskHandle"),
    )


def follow_redrive(
    sqs: Any, dlq_arn: str, on_status: Callable[[MoveStatus], None],
    interval_s: float = 1.0, timeout_s: float = 3600.0,
) -> MoveStatus:
    """Poll the task until it ends (or `timeout_s`), reporting each status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = redrive_status(sqs, dlq_arn)
        on_status(status)
        if status.status in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(interval_s)


# ---------------------------------------------------------------------------------- stats


def stats(sqs: Any, cloudwatch: Any, queue_url: str) -> dict[str, Any]:
    """Counts of a queue and of its DLQ, and the oldest message's age (CloudWatch's
    ApproximateAgeOfOldestMessage, the last 15 minutes' maximum) when it can be read."""
    names = [*COUNTS.values(), "RedrivePolicy", "QueueArn"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    out: dict[str, Any] = {"queue_url": queue_url}
    out.update({k: int(attributes[v]) for k, v in COUNTS.items() if v in attributes})
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    out["oldest_age_s"], out["oldest_age_note"] = _oldest_age(cloudwatch, name)
    policy = attributes.get("RedrivePolicy")
    if policy:
        dlq_url = url_of_arn(sqs, json.loads(policy)["deadLetterTargetArn"])
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=list(COUNTS.values()))
        out["dlq"] = {"queue_url": dlq_url} | {
            k: int(dlq["Attributes"][v]) for k, v in COUNTS.items() if v in dlq["Attributes"]
        }
    return out


def _oldest_age(cloudwatch: Any, queue_name: str) -> tuple[float | None, str]:
    now = dt.datetime.now(dt.UTC)
    try:
        response = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_name}],
            StartTime=now - dt.timedelta(minutes=15), EndTime=now, Period=60,
            Statistics=["Maximum"],
        )
    except Exception as exc:
        return None, f"CloudWatch unavailable: {error_code(exc)}"
    points = sorted(response.get("Datapoints", []), key=lambda p: p["Timestamp"])
    if not points:
        return None, "no CloudWatch data in the last 15 minutes"
    return float(points[-1]["Maximum"]), "CloudWatch, latest minute"


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="seconds")


def as_dict(item: Any) -> dict[str, Any]:
    return asdict(item)
