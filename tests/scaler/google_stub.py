"""Local stand-ins for Google STS, IAM Credentials and the GKE (container.googleapis.com) REST API.

google-auth's external-account credentials and google-cloud-container's REST transport are pointed
at this server (token_url / service_account_impersonation_url / api_endpoint), so the real client
code runs the real protocol: the STS exchange of a signed AWS GetCallerIdentity request, the
impersonation call, the JWT-bearer grant of a service-account key, and GetCluster.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from http_stub import send_json

AUDIENCE = (
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/aws/providers/lambda"
)
SA = "gpuqueue-scaler@proj.iam.gserviceaccount.com"


class GoogleStub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.sts_fail: int | None = None
        self.container_fail: int | None = None
        self.cluster: dict[str, Any] = {}
        self.sa_public_pem: bytes | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                send_json(self, status, body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                ctype = self.headers.get("Content-Type", "")
                body: Any = (
                    json.loads(raw) if "json" in ctype else dict(urllib.parse.parse_qsl(raw))
                )
                stub.requests.append(("POST", self.path, dict(self.headers), body))
                status, answer = stub.post(self.path, self.headers, body)
                self._reply(status, answer)

            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path, dict(self.headers), None))
                status, answer = stub.get(self.path, self.headers)
                self._reply(status, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wif_config(self) -> dict[str, Any]:
        return {
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": f"{self.url}/sts/v1/token",
            "service_account_impersonation_url": (
                f"{self.url}/iam/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
            ),
            "credential_source": {
                "environment_id": "aws1",
                "regional_cred_verification_url": (
                    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
                ),
            },
        }

    def post(self, path: str, headers: Any, body: Any) -> tuple[int, dict[str, Any]]:
        if path == "/sts/v1/token":
            if self.sts_fail:
                return self.sts_fail, {"error": "invalid_grant",
                                       "error_description": "The caller's AWS role is not allowed"}
            return 200, {
                "access_token": "federated-token",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        if path.startswith("/iam/v1/projects/-/serviceAccounts/"):
            if headers.get("Authorization") != "Bearer federated-token":
                return 401, {"error": {"message": "bad federated token"}}
            return 200, {"accessToken": "sa-token", "expireTime": "2099-01-01T00:00:00Z"}
        if path == "/oauth2/token":
            from google.auth import jwt

            assert self.sa_public_pem is not None
            # google-auth signs for Google's token audience whatever token_uri it posts to
            claims = jwt.decode(body["assertion"], certs=self.sa_public_pem, verify=True,
                                audience="https://oauth2.googleapis.com/token")
            if claims.get("iss") != SA:
                return 400, {"error": "invalid_grant"}
            return 200, {"access_token": "sa-token", "expires_in": 3600, "token_type": "Bearer"}
        return 404, {"error": {"message": f"no route {path}"}}

    def get(self, path: str, headers: Any) -> tuple[int, dict[str, Any]]:
        if path.startswith("/v1/projects/"):
            if self.container_fail:
                err = {"code": self.container_fail, "message": "injected", "status": "UNAVAILABLE"}
                return self.container_fail, {"error": err}
            if headers.get("Authorization") != "Bearer sa-token":
                err = {"code": 401, "message": "no token", "status": "UNAUTHENTICATED"}
                return 401, {"error": err}
            name = path.split("?")[0][len("/v1/"):]
            if name != self.cluster.get("selfName"):
                return 404, {"error": {"code": 404, "message": f"{name} not found",
                                       "status": "NOT_FOUND"}}
            return 200, {k: v for k, v in self.cluster.items() if k != "selfName"}
        return 404, {"error": {"message": f"no route {path}"}}

    def sts_subject_token(self) -> dict[str, Any]:
        [(_, _, _, body)] = [r for r in self.requests if r[1] == "/sts/v1/token"][-1:]
        return json.loads(urllib.parse.unquote(body["subject_token"]))  # type: ignore[no-any-return]
