"""AWS Lambda entry point: `scaler.handler.handler`, run every minute by EventBridge.

Module import stays cheap (cold start): settings, boto3, kubernetes and google clients are imported
inside the call. The handler raises when any target failed, so Lambda's retries, error metric and
alarms see it; the other targets were still served first.
"""

from __future__ import annotations

import logging
from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    from scaler.config import load_settings
    from scaler.runner import build_deps, raise_if_failed, run_once

    settings = load_settings()
    logging.getLogger().setLevel(settings.log_level.upper())
    logging.getLogger("scaler").setLevel(settings.log_level.upper())
    dry_run = None
    if isinstance(event, dict) and "dry_run" in event:
        dry_run = bool(event["dry_run"])
    outcomes = run_once(settings, build_deps(settings), dry_run)
    raise_if_failed(outcomes)
    return {"targets": [o.as_dict() for o in outcomes]}
