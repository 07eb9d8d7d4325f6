"""The SNS adapter: results published to a topic a request's reply_to named (on the allow-list).
It implements `worker.seams.TopicSeam` over boto3's SNS client from the standard chain (region,
credentials, web identity, `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SNS`), one client per region
a topic ARN names: publishing needs the topic's own region.

PublishBatch takes 10 entries and 256 KiB in all (the writers pack within that, and put larger
results in S3 first). Like SQS's batch calls it can half-fail with HTTP 200: `Failed` entries are
retried one by one with Publish, a bounded number of times, unless SNS says the sender is at
fault. A topic that is gone or refuses this worker raises `DestinationUnreachable` (the writers
then send a ReplyToUnreachable error to the result queue and delete the request).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from worker.contract.reply_to import parse_topic_arn
from worker.errors import DestinationUnreachable, error_code
from worker.seams import BatchOutcome, OutgoingMessage
from worker.sqs import ENTRY_RETRY_BUDGET_S, MAX_REGIONS, RetryBudget
from worker.sqs_limits import BATCH_MAX_ENTRIES

log = logging.getLogger(__name__)

ENTRY_RETRIES = 3
# A topic that does not exist, or whose policy (or KMS key) refuses this worker: permanent.
PERMANENT_CODES = frozenset(
    {
        "NotFound",
        "NotFoundException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "AccessDenied",
        "AccessDeniedException",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSNotFound",
        "KMSInvalidState",
        "InvalidSecurity",
    }
)
# short timeouts, like the SQS control transport: a hung endpoint becomes a counted failure
CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}
)


class SnsAdapter:
    def __init__(
        self,
        session: boto3.Session | None = None,
        *,
        endpoint_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session or boto3.Session()
        self._endpoint_url = endpoint_url
        self._sleep = sleep
        self._clock = clock
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def client(self, region: str, topic_arn: str = "") -> Any:
        """The region's client, made once; at most MAX_REGIONS of them (each is kept)."""
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                if len(self._clients) >= MAX_REGIONS:
                    raise DestinationUnreachable(topic_arn, f"more than {MAX_REGIONS} regions")
                try:
                    client = self._session.client(
                        "sns", region_name=region, endpoint_url=self._endpoint_url,
                        config=CLIENT_CONFIG,
                    )
                except ValueError as exc:  # botocore's InvalidRegionError
                    raise DestinationUnreachable(topic_arn, f"InvalidRegion: {exc}") from None
                self._clients[region] = client
            return client

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def publish_batch(self, topic_arn: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        if len(messages) > BATCH_MAX_ENTRIES:
            raise ValueError(f"{len(messages)} entries; PublishBatch takes at most 10")
        outcome = BatchOutcome()
        if not messages:
            return outcome
        client = self.client(parse_topic_arn(topic_arn).region, topic_arn)
        entries = [_entry(m) for m in messages]
        try:
            self._count()
            response = client.publish_batch(
                TopicArn=topic_arn,
                PublishBatchRequestEntries=[{"Id": str(i), **e} for i, e in enumerate(entries)],
            )
        except Exception as exc:  # the whole call failed, after botocore's own retries
            code = error_code(exc)
            if code in PERMANENT_CODES:
                raise DestinationUnreachable(topic_arn, code) from exc
            log.warning("sns publish batch failed: %s", exc)
            outcome.failed = {i: str(exc)[:500] for i in range(len(entries))}
            return outcome
        outcome.succeeded.extend(int(item["Id"]) for item in response.get("Successful", ()))
        retries = RetryBudget(self._clock() + ENTRY_RETRY_BUDGET_S)
        for item in response.get("Failed", ()):
            index = int(item["Id"])
            reason = f"{item.get('Code', '?')}: {item.get('Message', '')}"
            alone = not item.get("SenderFault")
            if alone and self._retry_alone(client, topic_arn, entries[index], retries):
                outcome.succeeded.append(index)
            else:
                outcome.failed[index] = reason
        outcome.succeeded.sort()
        return outcome

    def _retry_alone(
        self, client: Any, topic_arn: str, entry: dict[str, Any], retries: RetryBudget
    ) -> bool:
        """As the SQS adapter's: within the batch's budget; an endpoint that cannot be reached
        (botocore's connection and timeout errors) ends every entry's retries."""
        for attempt in range(ENTRY_RETRIES):
            if retries.spent(self._clock()):
                return False
            try:
                self._count()
                client.publish(TopicArn=topic_arn, **entry)
                return True
            except BotoCoreError as exc:  # not an answer: connection refused, timed out
                log.debug("sns single retry failed: %s", error_code(exc))
                retries.over = True
                return False
            except Exception as exc:
                log.debug("sns single retry failed: %s", error_code(exc))
                self._sleep(min(2.0, 0.1 * 2**attempt))
        return False


def _entry(message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"Message": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {k: dict(v) for k, v in message.attributes.items()}
    return entry
