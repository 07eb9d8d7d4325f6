"""Where the measured drain rate comes from (messages deleted per second by all replicas).

SQS's attributes alone cannot tell arrivals from service, so the rate comes from:

* `cloudwatch` (default): `GetMetricData` on AWS/SQS NumberOfMessagesDeleted, 1-minute Sum, the
  last `drain_window_s`; the newest minutes CloudWatch has published (they lag a few minutes),
  averaged. Needs only `cloudwatch:GetMetricData`; works for any consumer, no scraping path from
  AWS into the cluster.
* `prometheus`: an instant query over HTTP (the workers' gpuqueue_messages_succeeded_total rate),
  for clusters whose Prometheus the scaler can reach.
* `prior`: none; the policy uses each target's `drain_rate_prior`.

A source failure is not fatal: the policy falls back to what it learned before / the prior, and the
reason line says so (the backlog alone still drives scale-up).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from scaler.queue import queue_name


class DrainError(RuntimeError):
    pass


class DrainSource(Protocol):
    #: whether `rate` measures one queue (CloudWatch's per-queue metric: several queues' rates
    #: add up) or the whole Deployment (a Prometheus query over its pods: asked once)
    per_queue: bool

    def rate(self, queue_url: str, namespace: str, deployment: str) -> float | None: ...


class NoDrainSource:
    per_queue = False

    def rate(self, queue_url: str, namespace: str, deployment: str) -> float | None:
        return None


def total_rate(
    source: DrainSource, queue_urls: list[str], namespace: str, deployment: str
) -> float | None:
    """Messages deleted per second from all of a target's queues (None: no figure at all)."""
    if not source.per_queue:
        return _finite(source.rate(queue_urls[0], namespace, deployment))
    rates = [_finite(source.rate(url, namespace, deployment)) for url in queue_urls]
    known = [r for r in rates if r is not None]
    return sum(known) if known else None


def _finite(rate: float | None) -> float | None:
    """A rate the policy can use: Prometheus answers NaN (0/0) and +Inf as readily as a number,
    and either broke the decision (NaN) or the state's JSON (inf), run after run."""
    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        raise DrainError(f"the drain rate source returned {rate!r}, not a rate")
    return rate


class CloudWatchDrain:
    per_queue = True

    def __init__(
        self,
        client: Any | None = None,
        window_s: int = 300,
        minutes: int = 2,
        timeout_s: float = 10.0,
    ) -> None:
        if client is None:
            from scaler import aws

            client = aws.client("cloudwatch", timeout_s)
        self._cw = client
        self._window_s = window_s
        self._minutes = minutes

    def rate(
        self,
        queue_url: str,
        namespace: str = "",
        deployment: str = "",
        now: dt.datetime | None = None,
    ) -> float | None:
        from botocore.exceptions import BotoCoreError, ClientError

        end = (now or dt.datetime.now(dt.UTC)).replace(second=0, microsecond=0)
        start = end - dt.timedelta(seconds=self._window_s)
        try:
            resp = self._cw.get_metric_data(
                MetricDataQueries=[
                    {
                        "Id": "deleted",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/SQS",
                                "MetricName": "NumberOfMessagesDeleted",
                                "Dimensions": [
                                    {"Name": "QueueName", "Value": queue_name(queue_url)}
                                ],
                            },
                            "Period": 60,
                            "Stat": "Sum",
                        },
                        "ReturnData": True,
                    }
                ],
                StartTime=start,
                EndTime=end,
                ScanBy="TimestampDescending",
            )
        except (ClientError, BotoCoreError) as exc:
            raise DrainError(f"CloudWatch GetMetricData for {queue_url}: {exc}") from None
        results = resp.get("MetricDataResults", [])
        if not results:
            return None
        points = sorted(
            zip(results[0].get("Timestamps", []), results[0].get("Values", []), strict=False),
            reverse=True,
        )[: self._minutes]
        if not points:
            return None
        return sum(float(v) for _, v in points) / (60.0 * len(points))


class PrometheusDrain:
    per_queue = False

    def __init__(self, url: str, query: str, timeout_s: float = 5.0) -> None:
        self._url = url.rstrip("/")
        self._query = query
        self._timeout = timeout_s

    def rate(self, queue_url: str, namespace: str, deployment: str) -> float | None:
        try:
            query = self._query.format(
                namespace=namespace, deployment=deployment, queue=queue_url
            )
        except (KeyError, IndexError, ValueError) as exc:  # settings check it; a caller may not
            raise DrainError(f"Prometheus query template: {type(exc).__name__}: {exc}") from None
        url = f"{self._url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as resp:
                body = json.load(resp)
        # HTTPException: a body cut short (IncompleteRead), a port that does not speak HTTP/1.1
        # (BadStatusLine): a warning like any unreachable source, not the target's failure
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            raise DrainError(f"Prometheus query at {self._url}: {exc!r}") from None
        if not isinstance(body, dict):
            raise DrainError(f"Prometheus answered {type(body).__name__}, not an object")
        if body.get("status") != "success":
            raise DrainError(f"Prometheus query failed: {body.get('error', body)}")
        data = body.get("data")
        result = data.get("result", []) if isinstance(data, dict) else None
        if not isinstance(result, list):
            raise DrainError(f"Prometheus returned no result vector: {str(data)[:200]}")
        if not result:
            return None
        try:
            return float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise DrainError(f"Prometheus returned an unexpected vector: {exc}") from None
