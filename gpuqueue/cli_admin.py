"""The CLI's queue-operations commands: dlq peek, dlq redrive, stats, sweep."""

from __future__ import annotations

import argparse
import time
from typing import Any

from gpuqueue.cli_common import EXIT_FAILED, EXIT_OK, UsageError, _aws, _emit


def _dlq_urls(args: argparse.Namespace, sqs: Any) -> tuple[str | None, str]:
    from gpuqueue import admin

    if args.dlq:
        return args.queue, args.dlq
    if not args.queue:
        raise UsageError("give --queue (its DLQ from the RedrivePolicy) or --dlq")
    try:
        return args.queue, admin.dead_letter_url(sqs, args.queue)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_dlq_peek(args: argparse.Namespace) -> int:
    from gpuqueue import admin

    sqs = _aws(args, "sqs")
    _, dlq = _dlq_urls(args, sqs)
    peeked = admin.peek(sqs, dlq, args.max)
    text = "\n".join(f"{p.message_id}\treceives={p.receive_count}\t{p.sent_at}\t{p.body[:200]}"
                     for p in peeked) or f"{dlq}: empty"
    _emit({"dlq": dlq, "messages": [admin.as_dict(p) for p in peeked]}, args.json, text)
    return EXIT_OK


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from gpuqueue import admin
    from gpuqueue.progress import progress

    sqs = _aws(args, "sqs")
    source, dlq = _dlq_urls(args, sqs)
    dlq_arn = admin.queue_arn(sqs, dlq)
    destination = admin.queue_arn(sqs, source) if source else None
    handle = admin.start_redrive(sqs, dlq_arn, destination, args.rate)
    if args.no_wait:
        _emit({"task_handle": handle}, args.json, f"started: {handle}")
        return EXIT_OK
    with progress(None, "redriving", not args.no_progress) as update:
        final = admin.follow_redrive(
            sqs, dlq_arn, lambda s: update(total=s.to_move, completed=s.moved),
            interval_s=args.interval_s,
        )
    _emit(admin.as_dict(final), args.json,
          f"{final.status}: {final.moved} moved" + (f" ({final.failure})" if final.failure else ""))
    return EXIT_OK if final.status == "COMPLETED" else EXIT_FAILED


def cmd_stats(args: argparse.Namespace) -> int:
    from gpuqueue import admin

    sqs, cloudwatch = _aws(args, "sqs"), _aws(args, "cloudwatch")
    rows = [admin.stats(sqs, cloudwatch, url) for url in args.queue]
    lines = []
    for row in rows:
        age = f"{row['oldest_age_s']:.0f} s" if row["oldest_age_s"] is not None else "unknown"
        lines.append(f"{row['queue_url']}\tvisible={row.get('visible')}\tin_flight="
                     f"{row.get('in_flight')}\tdelayed={row.get('delayed')}\toldest={age}"
                     f" ({row['oldest_age_note']})")
        if "dlq" in row:
            lines.append(f"  dlq {row['dlq']['queue_url']}\tvisible={row['dlq'].get('visible')}")
    _emit(rows, args.json, "\n".join(lines))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from gpuqueue.reply_queue import sweep

    swept = sweep(_aws(args, "sqs"), prefix=args.prefix, dry_run=args.dry_run)
    now = time.time()

    def state(s: Any) -> str:
        if s.deleted:
            return "deleted"
        expired = s.expires_at is not None and s.expires_at <= now
        return "expired (dry run)" if expired else "kept"

    text = "\n".join(
        f"{state(s)}\t{s.queue_url}\texpires_at={s.expires_at}" for s in swept
    ) or "no reply queues"
    _emit([s.__dict__ for s in swept], args.json, text)
    return EXIT_OK
