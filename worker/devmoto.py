"""moto's server, with ReceiveMessage made atomic as SQS's is.

moto (5.2.5 here) checks that a message is visible and marks it received without a lock
(getmoto/moto#519, closed in 2016, still so), so two concurrent ReceiveMessage calls can both
return one message. Six threads receiving from one queue of 200 messages until it was empty,
15 times over, got one message twice (1 in 3,000 message-receives). A worker's receivers are
such calls, and real SQS never hands a message to two receives within its visibility timeout,
so a test that counts duplicate results would count the emulator's. Each scan of a queue runs
under one lock here; a long poll waits outside it, as moto's own loop does (one empty queue
never holds another's receives).

    python -m worker.devmoto -H 127.0.0.1 -p PORT     # moto.server's arguments

`worker.devsqs.start_moto` starts this; nothing else in moto changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

_SCAN = threading.Lock()

Receive = Callable[..., list[Any]]


def atomic_receive(scan: Receive) -> Receive:
    """moto's SQSBackend.receive_message, each scan under one lock and the wait outside it."""

    def receive_message(
        backend: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> list[Any]:
        deadline = time.time() + wait_seconds_timeout
        while True:
            with _SCAN:  # wait 0: one scan, which marks what it returns as received
                messages = scan(
                    backend, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            if messages or time.time() >= deadline:
                return messages
            # returns at once when a message is visible (no lost wake-up), else after 1 s
            backend.get_queue(queue_name).wait_for_messages(1)

    return receive_message


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main
    from moto.sqs.models import SQSBackend

    SQSBackend.receive_message = atomic_receive(SQSBackend.receive_message)  # type: ignore[method-assign]
    moto_main(argv)


if __name__ == "__main__":
    main()
