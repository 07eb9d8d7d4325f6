"""The one way the scaler's local HTTP stand-ins (Kubernetes, Google, Prometheus, Lambda's Runtime
API) write an answer: a status, a body with its length, the connection kept alive."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


def send_body(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    send_body(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json"})
