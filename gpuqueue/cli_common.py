"""What the CLI's commands share: exit codes, output, boto3 sessions and clients."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AWS, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class UsageError(Exception):
    """Bad input on the command line or in a file: exit code 2."""


def _emit(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data) if as_json else text)


def _session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.Session(region_name=args.region) if args.region else boto3.Session()


def _client(
    args: argparse.Namespace, queue: str, result_queue: str | None = None, **options: Any
) -> Any:
    from gpuqueue.client import Client

    return Client(
        queue, result_queue, session=_session(args), endpoint_url=args.endpoint_url, **options
    )


def _aws(args: argparse.Namespace, service: str) -> Any:
    return _session(args).client(service, endpoint_url=args.endpoint_url)
