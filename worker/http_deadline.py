"""http.client answers read against one deadline, for the SQS transport and the image fetcher.

A socket's timeout bounds each read only: an endpoint (or a middlebox) sending a byte at a time
held a call for as long as it kept dripping, the status line and headers included. A connection
class that mixes in `DeadlineAnswers` reads each answer, from its status line to its last body
byte, against the `deadline` (a time.monotonic() value) set before the request.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import time
from typing import Any


class DeadlineAnswers:
    """Mixed into an http.client connection class, before it."""

    deadline = float("inf")

    def getresponse(self) -> http.client.HTTPResponse:
        connection: Any = self
        connection.response_class = functools.partial(_DeadlineResponse, deadline=self.deadline)
        return super().getresponse()  # type: ignore[misc]


class _DeadlineReader(io.RawIOBase):
    def __init__(self, raw: Any, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw  # http.client's socket reader: it holds the socket open until closed
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer did not arrive within its deadline")
        self._sock.settimeout(remaining)
        return int(self._raw.readinto(buffer))

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # nothing is read yet: take http.client's reader out of its buffer and read it ourselves
        self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))
