"""`gpuqueue`: the producers' command line. Region, credentials and endpoint come from boto3's
standard chain (AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, profiles, web identity); --region and
--endpoint-url override them.

Exit codes (docs/producers.md):
    0   done
    1   done, but something failed: an error result (embed), requests SQS refused (submit),
        a redrive that FAILED or was CANCELLED
    2   usage: bad arguments, an unreadable file, an invalid request line
    3   AWS refused or could not be reached: no such queue, access denied, no region or
        credentials, endpoint unreachable
    4   timed out waiting for results (embed)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpuqueue.cli_admin import cmd_dlq_peek, cmd_dlq_redrive, cmd_stats, cmd_sweep
from gpuqueue.cli_common import (
    EXIT_AWS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    UsageError,
    _client,
    _emit,
)

# ---------------------------------------------------------------------------------- commands


def _read_requests(args: argparse.Namespace) -> tuple[list[Any], list[str]]:
    """The requests, and where each came from ("FILE:LINE", or "" for a TEXT argument), so an
    invalid one is named by the line an editor shows, not by its index among the requests."""
    if args.file and args.texts:
        raise UsageError("give TEXT arguments or --file, not both")
    if not args.file and not args.texts:
        raise UsageError("nothing to submit: give TEXT arguments or --file requests.jsonl")
    parameters = _json(args.parameters, "--parameters") if args.parameters else None
    if parameters is not None and not isinstance(parameters, dict):
        raise UsageError(f"--parameters: a JSON object, not {type(parameters).__name__}")
    common = {"task": args.task, "ttl_s": args.ttl_s, "reply_to": args.reply_to,
              "parameters": parameters}
    if args.texts:
        return [{**common, "inputs": text} for text in args.texts], [""] * len(args.texts)
    requests, origins = [], []
    for number, line in _lines(args.file):
        if not line.strip():
            continue
        item = _json(line, f"{args.file}:{number}")
        if not isinstance(item, dict | str):
            raise UsageError(f"{args.file}:{number}: a request object or a text, not {item!r}")
        fields = {"inputs": item} if isinstance(item, str) else item
        requests.append({**{k: v for k, v in common.items() if v is not None}, **fields})
        origins.append(f"{args.file}:{number}")
    return requests, origins


def _lines(file: str) -> list[tuple[int, str]]:
    """The file's lines, numbered from 1. Split at "\n" only, as JSON lines are: a U+2028 or a
    form feed inside a JSON string is text, not the end of a line."""
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise UsageError(f"--file: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(
            f"{file}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}): {exc.reason}"
        ) from None
    return list(enumerate(text.split("\n"), 1))


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from None
    except RecursionError:  # json's parser recurses once per level: "[[[[..." runs out
        raise UsageError(f"{where}: JSON nested too deeply to read") from None


def cmd_submit(args: argparse.Namespace) -> int:
    from gpuqueue.errors import InvalidRequest, SubmitFailed, SubmitInterrupted
    from gpuqueue.progress import progress

    requests, origins = _read_requests(args)
    client = _client(args, args.queue)
    failure: SubmitFailed | SubmitInterrupted | None = None
    with progress(len(requests), "submitting", len(requests) > 50 and not args.no_progress) as up:
        try:
            ids = client.submit_many(requests, on_sent=lambda n: up(advance=n))
        except InvalidRequest as exc:
            if not origins[exc.index]:
                raise UsageError(str(exc)) from None
            raise UsageError(f"{origins[exc.index]}: {exc.reason}") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except (SubmitFailed, SubmitInterrupted) as exc:
            failure = exc
    if failure is not None:
        _report_unsent(failure, origins, args.json)
        return EXIT_INTERRUPTED if isinstance(failure, SubmitInterrupted) else EXIT_FAILED
    _emit({"ids": ids}, args.json, "\n".join(ids))
    return EXIT_OK


def _report_unsent(failure: Any, origins: list[str], as_json: bool) -> None:
    """What went out and what did not, each by the line it came from (the ids of lines without
    an "id" are made up here, so an id alone names no line): a rerun of the failed lines sends
    nothing twice."""
    where = {i: o for i, o in zip(failure.ids, origins, strict=False) if o}
    if as_json:
        _emit({"sent": failure.sent, "failed": failure.failed, "lines": where}, True, "")
    else:
        sent = set(failure.sent)
        for request_id in failure.ids:
            status = "sent" if request_id in sent else f"not sent\t{failure.failed[request_id]}"
            print(f"{where.get(request_id, '-')}\t{request_id}\t{status}")
    print(f"gpuqueue: {failure}", file=sys.stderr)


def _result_line(result: Any) -> str:
    if result.ok:
        shapes = [len(o) if isinstance(o, list) else o for o in (result.outputs or [])][:3]
        return f"{result.id}\tok\t{len(result.outputs or [])} output(s)\t{shapes}"
    return f"{result.id}\terror\t{result.error.type}\t{result.error.message}"


def cmd_results(args: argparse.Namespace) -> int:
    client = _client(args, args.queue, args.queue, delete_s3_objects=not args.keep_s3_objects)
    results = client.results(wait_s=args.wait_s, max_results=args.max, follow=args.follow)
    for result in results:
        try:
            _emit(result.model_dump(mode="json"), args.json, _result_line(result))
            sys.stdout.flush()
        except OSError as exc:
            # not written: put back (thrown into the loop) rather than deleted with the rest
            with contextlib.suppress(OSError):
                results.throw(exc)
            if isinstance(exc, BrokenPipeError):  # the reader went away (`| head`): done
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return EXIT_OK
            print(f"gpuqueue: writing result {result.id} failed (left on the queue): {exc}",
                  file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def cmd_embed(args: argparse.Namespace) -> int:
    with _client(args, args.queue, args.result_queue) as client:
        vectors = client.embed(args.texts, timeout_s=args.timeout_s)
    lines = [
        f"{len(v)}\t{[round(x, 4) for x in v[:4]]}\t{t}"
        for v, t in zip(vectors, args.texts, strict=True)
    ]
    _emit(vectors, args.json, "\n".join(lines))
    return EXIT_OK


# ---------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", help="AWS region (default: boto3's chain)")
    common.add_argument("--endpoint-url", help="SQS/S3 endpoint (default: AWS_ENDPOINT_URL)")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--json", action="store_true", help="print JSON instead of text")
    top = argparse.ArgumentParser(
        prog="gpuqueue", description="Submit requests to gpuqueue workers and read results.",
        epilog="exit codes: 0 done, 1 something failed, 2 usage, 3 AWS refused or unreachable, "
        "4 timed out, 130 interrupted",
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", parents=[common, data], help="put requests on a queue")
    p.add_argument("--queue", required=True, help="the input queue URL")
    p.add_argument("--task", default="embed", help="embed, classify or generate")
    p.add_argument("--parameters", help="task parameters as a JSON object")
    p.add_argument("--ttl-s", type=float, help="deadline in seconds after the send")
    p.add_argument("--reply-to", help="queue URL or SNS topic ARN for the results")
    p.add_argument("--file", help="JSON lines: one request object (or text) per line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="one request per text")
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("results", parents=[common, data], help="read results from a queue")
    p.add_argument("--queue", required=True, help="the result queue URL")
    p.add_argument("--follow", action="store_true", help="keep reading (Ctrl-C to stop)")
    p.add_argument("--max", type=int, help="stop after this many results")
    p.add_argument("--wait-s", type=int, default=20, help="long-poll seconds (default 20)")
    p.add_argument("--keep-s3-objects", action="store_true", help="do not delete S3 payloads")
    p.set_defaults(run=cmd_results)

    p = sub.add_parser("embed", parents=[common, data], help="embed texts and wait")
    p.add_argument("--queue", required=True, help="the input queue URL")
    p.add_argument("--result-queue", help="read results here (default: a temporary queue)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="wait at most (default 60)")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.set_defaults(run=cmd_embed)

    dlq = sub.add_parser("dlq", help="the dead-letter queue").add_subparsers(
        dest="dlq_command", required=True
    )
    for name, helptext in (("peek", "show DLQ messages, leaving them"),
                           ("redrive", "move DLQ messages back (StartMessageMoveTask)")):
        p = dlq.add_parser(name, parents=[common, data], help=helptext)
        p.add_argument("--queue", help="the source queue (its DLQ from the RedrivePolicy)")
        p.add_argument("--dlq", help="the DLQ URL, when not found from --queue")
        if name == "peek":
            p.add_argument("--max", type=int, default=10, help="messages at most (default 10)")
            p.set_defaults(run=cmd_dlq_peek)
        else:
            p.add_argument("--rate", type=int, help="MaxNumberOfMessagesPerSecond")
            p.add_argument("--no-wait", action="store_true", help="start it and return")
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
            p.add_argument("--interval-s", type=float, default=1.0, help=argparse.SUPPRESS)
            p.set_defaults(run=cmd_dlq_redrive)

    p = sub.add_parser("stats", parents=[common, data], help="queue counts and oldest age")
    p.add_argument("--queue", required=True, action="append", help="a queue URL (repeatable)")
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser("sweep", parents=[common, data], help="delete expired reply queues")
    p.add_argument("--prefix", default="gpuqueue-reply-", help="queue name prefix")
    p.add_argument("--dry-run", action="store_true", help="only list what would go")
    p.set_defaults(run=cmd_sweep)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"gpuqueue: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _failure(exc)


def _failure(exc: Exception) -> int:
    """Map what went wrong to an exit code, with one line on stderr."""
    from botocore.exceptions import BotoCoreError, ClientError

    from gpuqueue.errors import GpuqueueError, RequestFailed, ResultTimeout, SubmitFailed

    if isinstance(exc, ResultTimeout):
        code = EXIT_TIMEOUT
    elif isinstance(exc, SubmitFailed):  # embed's requests: a missing queue is AWS refusing us
        code = EXIT_AWS if _queue_refused(exc) else EXIT_FAILED
    elif isinstance(exc, ValueError):  # InvalidRequest too (a GpuqueueError as well)
        code = EXIT_USAGE
    elif isinstance(exc, RequestFailed | GpuqueueError):
        code = EXIT_FAILED
    elif isinstance(exc, ClientError | BotoCoreError):
        code = EXIT_AWS
    else:
        raise exc
    print(f"gpuqueue: {exc}", file=sys.stderr)
    return code


def _queue_refused(exc: Any) -> bool:
    """Whether every request failed because the queue refused us for good (no such queue,
    access denied): each reason is "CODE: message", as gpuqueue.sending writes it."""
    from gpuqueue.sending import PERMANENT_CODES

    codes = {reason.split(":", 1)[0] for reason in exc.failed.values()}
    return not exc.sent and codes <= PERMANENT_CODES


if __name__ == "__main__":
    sys.exit(main())
