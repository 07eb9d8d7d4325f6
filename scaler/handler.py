"""AWS Lambda entry point: `scaler.handler.handler`, run every minute by EventBridge.

Module import stays cheap (cold start): settings, boto3, kubernetes and google clients are imported
inside the call. The handler raises when any target failed, so Lambda's retries, error metric and
alarms see it; the other targets were still served first.
"""

from __future__ import annotations

import logging
import time
from typing import Any

# leave this much of the invocation's time unused after the last run (beyond a run as slow as
# the slowest one so far)
SAFETY_MARGIN_S = 8.0


def handler(event: Any, context: Any) -> dict[str, Any]:
    from scaler.config import load_settings
    from scaler.runner import build_deps, raise_if_failed, run_once

    settings = load_settings()
    logging.getLogger().setLevel(settings.log_level.upper())
    logging.getLogger("scaler").setLevel(settings.log_level.upper())
    dry_run = None
    if isinstance(event, dict) and "dry_run" in event:
        dry_run = bool(event["dry_run"])
    deps = build_deps(settings)
    start = time.monotonic()
    runs = []
    slowest = 0.0  # the longest run so far: what the next one may take
    for index in range(settings.runs_per_invocation):
        if index:
            wait = max(0.0, start + index * settings.run_interval_s - time.monotonic())
            # stop early rather than run into the function timeout: Lambda would kill the run
            # between its patch and its state write. (A run that overran its slot waits 0: the
            # time it overran by is not time left.)
            if _remaining_s(context) < wait + slowest + SAFETY_MARGIN_S:
                break
            time.sleep(wait)  # a scheduled pause between decisions, not a synchronisation wait
        began = time.monotonic()
        # a target that might not finish before the function timeout is skipped, not started
        deadline = began + _remaining_s(context) - SAFETY_MARGIN_S
        runs.append(run_once(settings, deps, dry_run, deadline))
        slowest = max(slowest, time.monotonic() - began)
    for outcomes in runs:
        raise_if_failed(outcomes)
    return {"targets": [o.as_dict() for o in runs[-1]], "runs": len(runs)}


def _remaining_s(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if callable(getter) else float("inf")
