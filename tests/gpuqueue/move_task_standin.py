"""A small stand-in for SQS's StartMessageMoveTask / ListMessageMoveTasks, which neither fauxqs
nor moto implements (fauxqs: "Unknown action"; moto 5.2: HTTP 500). It sits in front of a real
local SQS server: every other call is forwarded to it unchanged, and a move task really moves
the messages there (receive from the DLQ, send to the destination, delete), as SQS does, so the
CLI is tested against the one call it needs and real queues for the rest."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3


class MoveTaskStandIn:
    def __init__(self, upstream: str, region: str = "us-east-1") -> None:
        self.upstream = upstream
        self.sqs = boto3.client("sqs", endpoint_url=upstream, region_name=region)
        self.tasks: dict[str, dict[str, Any]] = {}  # source ARN -> the latest task
        self.started: list[dict[str, Any]] = []  # StartMessageMoveTask requests, as received
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                if target == "AmazonSQS.StartMessageMoveTask":
                    self._answer(200, standin.start(json.loads(body)))
                elif target == "AmazonSQS.ListMessageMoveTasks":
                    self._answer(200, standin.list(json.loads(body)))
                else:
                    self._forward(body)

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes) -> None:
                parts = urlsplit(standin.upstream)
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()

    def _url(self, arn: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"])

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        self.started.append(request)
        source = self._url(request["SourceArn"])
        destination = self._url(request["DestinationArn"])
        count = int(self.sqs.get_queue_attributes(
            QueueUrl=source, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"])
        task = {"TaskHandle": uuid.uuid4().hex, "Status": "RUNNING",
                "SourceArn": request["SourceArn"], "DestinationArn": request["DestinationArn"],
                "ApproximateNumberOfMessagesMoved": 0,
                "ApproximateNumberOfMessagesToMove": count,
                "StartedTimestamp": int(time.time() * 1000)}
        self.tasks[request["SourceArn"]] = task
        threading.Thread(target=self._move, args=(task, source, destination), daemon=True).start()
        return {"TaskHandle": task["TaskHandle"]}

    def _move(self, task: dict[str, Any], source: str, destination: str) -> None:
        while task["ApproximateNumberOfMessagesMoved"] < task["ApproximateNumberOfMessagesToMove"]:
            got = self.sqs.receive_message(
                QueueUrl=source, MaxNumberOfMessages=2, WaitTimeSeconds=1
            ).get("Messages", [])
            if not got:
                break
            self.sqs.send_message_batch(QueueUrl=destination, Entries=[
                {"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(got)
            ])
            self.sqs.delete_message_batch(QueueUrl=source, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ])
            task["ApproximateNumberOfMessagesMoved"] += len(got)
            time.sleep(0.2)  # a rate, so that progress has steps to show
        task["Status"] = "COMPLETED"

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(request["SourceArn"])
        return {"Results": [dict(task)] if task else []}
