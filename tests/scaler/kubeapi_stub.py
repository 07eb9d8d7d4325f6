"""A small local HTTP server speaking the apps/v1 Deployment and scale endpoints.

No kube-apiserver binary can be had here (no network beyond package registries, no container
runtime), so adapters are tested with the real `kubernetes` client against this server. It keeps
Deployments in memory, applies JSON merge patches, enforces resourceVersion preconditions (409) and
records every request (method, path, Content-Type, body, Authorization) for the tests to assert.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from http_stub import send_json

PATH_RE = re.compile(
    r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/?]+)(?P<scale>/scale)?$"
)


@dataclass
class FakeDeployment:
    replicas: int = 1
    ready: int = 1
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: int = 100


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str | None
    body: Any
    authorization: str | None


class KubeApiStub:
    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """tls: (certfile, keyfile) to serve https, as a real API server does."""
        self.deployments: dict[tuple[str, str], FakeDeployment] = {}
        self.requests: list[Recorded] = []
        #: (method, "scale"|"deployment", ns/name) -> statuses to answer instead, one per request
        self.faults: dict[tuple[str, str, str], list[int]] = {}
        #: called before a scale PATCH is applied (a test plays a concurrent writer with it)
        self.before_scale_patch: Any = None
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                send_json(self, status, body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?")[0]
                with stub.lock:
                    stub.requests.append(
                        Recorded(
                            method,
                            path,
                            self.headers.get("Content-Type"),
                            body,
                            self.headers.get("Authorization"),
                        )
                    )
                    status, answer = stub.respond(method, path, body)
                self._send(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{scheme}://{self.address}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ model

    @staticmethod
    def status_body(code: int, message: str) -> dict[str, Any]:
        reasons = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 500: "InternalError"}
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reasons.get(code, "ServiceUnavailable"),
            "code": code,
        }

    def respond(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        match = PATH_RE.match(path)
        if not match:
            return 404, self.status_body(404, f"no route {path}")
        ns, name, is_scale = match["ns"], match["name"], bool(match["scale"])
        kind = "scale" if is_scale else "deployment"
        queued = self.faults.get((method, kind, f"{ns}/{name}"))
        if queued:
            code = queued.pop(0)
            return code, self.status_body(code, f"injected {code} for {method} {kind}")
        dep = self.deployments.get((ns, name))
        if dep is None:
            return 404, self.status_body(404, f'deployments.apps "{name}" not found')
        if method == "PATCH" and is_scale:
            if self.before_scale_patch:
                hook, self.before_scale_patch = self.before_scale_patch, None
                hook(dep)
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != str(dep.resource_version):
                return 409, self.status_body(
                    409, "Operation cannot be fulfilled: the object has been modified"
                )
            dep.replicas = int(body["spec"]["replicas"])
            dep.resource_version += 1
        elif method == "PATCH":
            for key, value in ((body.get("metadata") or {}).get("annotations") or {}).items():
                if value is None:
                    dep.annotations.pop(key, None)
                else:
                    dep.annotations[key] = value
            dep.resource_version += 1
        if is_scale:
            return 200, {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "resourceVersion": str(dep.resource_version),
                },
                "spec": {"replicas": dep.replicas},
                "status": {"replicas": dep.replicas, "selector": f"app={name}"},
            }
        return 200, {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": ns,
                "resourceVersion": str(dep.resource_version),
                "annotations": dict(dep.annotations),
            },
            "spec": {"replicas": dep.replicas},
            "status": {"replicas": dep.replicas, "readyReplicas": dep.ready},
        }

    def patches(self, kind: str = "scale") -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == "PATCH" and r.path.endswith("/scale") == (kind == "scale")
        ]

    def kubeconfig(self, path: Any, token: str = "test-token") -> str:
        text = f"""apiVersion: v1
kind: Config
clusters:
- name: stub
  cluster:
    server: {self.url}
contexts:
- name: stub
  context:
    cluster: stub
    user: scaler
current-context: stub
users:
- name: scaler
  user:
    token: {token}
"""
        path.write_text(text)
        return str(path)


def self_signed_cert(directory: Any) -> tuple[str, str, bytes]:
    """A CA-less self-signed certificate for 127.0.0.1: (certfile, keyfile, PEM), like a GKE CA."""
    import datetime as dt
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-stub")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    directory = Path(directory)
    certfile, keyfile = directory / "apiserver.crt", directory / "apiserver.key"
    certfile.write_bytes(pem)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile), pem
