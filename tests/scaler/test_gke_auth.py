"""GKE lookup (google-cloud-container, REST transport) and Google credentials (WIF and the
Secrets Manager key fallback) against local STS / IAM Credentials / container API stand-ins.

The AWS half of WIF (the Lambda role's temporary credentials and region) comes from the standard
environment variables the Lambda runtime sets (here the test session's dummy ones)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from google_stub import AUDIENCE, SA, GoogleStub

from scaler.auth import AuthError, access_token, secret_key_credentials, wif_credentials
from scaler.gke import GkeError, lookup_cluster

CLUSTER = "projects/proj/locations/europe-west4/clusters/gpu"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def google() -> Iterator[GoogleStub]:
    stub = GoogleStub()
    stub.cluster = {
        "selfName": CLUSTER,
        "name": "gpu",
        "endpoint": "34.90.1.2",
        "status": "RUNNING",
        "masterAuth": {"clusterCaCertificate": base64.b64encode(CA_PEM).decode()},
    }
    yield stub
    stub.stop()


def test_wif_exchanges_a_signed_aws_request_for_a_google_token(google: GoogleStub) -> None:
    creds = wif_credentials(google.wif_config())
    assert access_token(creds) == "sa-token"
    subject = google.sts_subject_token()
    headers = {h["key"].lower(): h["value"] for h in subject["headers"]}
    assert subject["url"].startswith("https://sts.us-east-1.amazonaws.com")
    assert subject["method"] == "POST"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert headers["x-goog-cloud-target-resource"] == AUDIENCE
    assert headers["x-amz-security-token"] == "testing"
    sts = next(r for r in google.requests if r[1] == "/sts/v1/token")[3]
    assert sts["audience"] == AUDIENCE
    assert sts["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    impersonation = [r for r in google.requests if SA in r[1]]
    assert impersonation and impersonation[0][1].endswith(":generateAccessToken")


def test_wif_refused_by_sts_is_named(google: GoogleStub) -> None:
    google.sts_fail = 400
    with pytest.raises(AuthError, match="token exchange failed") as info:
        access_token(wif_credentials(google.wif_config()))
    assert "not allowed" in str(info.value)


def test_wif_config_that_is_not_external_account() -> None:
    with pytest.raises(AuthError, match="credential config"):
        wif_credentials({"type": "external_account", "audience": "x"})


def _sa_key(google: GoogleStub) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    google.sa_public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account", "project_id": "proj", "private_key_id": "k1",
        "private_key": pem, "client_email": SA, "client_id": "1",
        "token_uri": f"{google.url}/oauth2/token",
    }


def test_secret_key_read_from_secrets_manager_at_run_time(
    google: GoogleStub, moto_server: Any
) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url)
    name = f"gpuqueue/scaler-sa-{time.time_ns()}"
    sm.create_secret(Name=name, SecretString=json.dumps(_sa_key(google)))
    creds = secret_key_credentials(name, sm)
    assert access_token(creds) == "sa-token"  # the stub verified the JWT's signature

    sm.create_secret(Name=name + "-bad", SecretString="not a key")
    with pytest.raises(AuthError, match="not a service-account key") as info:
        secret_key_credentials(name + "-bad", sm)
    assert "not a key" not in str(info.value)  # never echo the secret
    with pytest.raises(AuthError, match="cannot read"):
        secret_key_credentials(name + "-missing", sm)


def _static(token: str) -> Any:
    from google.oauth2.credentials import Credentials

    return Credentials(token=token)


def test_get_cluster_over_rest_gives_endpoint_and_ca(google: GoogleStub) -> None:
    access = lookup_cluster(CLUSTER, _static("sa-token"), google.url)
    assert access.host == "https://34.90.1.2"
    assert access.ca_pem == CA_PEM
    [get] = [r for r in google.requests if r[0] == "GET"]
    assert get[1].startswith(f"/v1/{CLUSTER}")


def test_gke_api_down_is_named(google: GoogleStub) -> None:
    google.container_fail = 503
    with pytest.raises(GkeError, match=f"get_cluster {CLUSTER}"):
        lookup_cluster(CLUSTER, _static("sa-token"), google.url, timeout_s=2)


def test_gke_api_unreachable_is_named() -> None:
    with pytest.raises(GkeError, match=CLUSTER):
        lookup_cluster(CLUSTER, _static("sa-token"), "http://127.0.0.1:9", timeout_s=2)


def test_unknown_cluster_is_named(google: GoogleStub) -> None:
    with pytest.raises(GkeError, match="not found"):
        lookup_cluster("projects/proj/locations/x/clusters/nope", _static("sa-token"), google.url)


def test_private_and_dns_endpoints(google: GoogleStub) -> None:
    google.cluster["privateClusterConfig"] = {"privateEndpoint": "10.8.0.2"}
    access = lookup_cluster(CLUSTER, _static("sa-token"), google.url, endpoint_kind="private")
    assert access.host == "https://10.8.0.2" and access.ca_pem == CA_PEM
    with pytest.raises(GkeError, match="DNS endpoint not enabled"):
        lookup_cluster(CLUSTER, _static("sa-token"), google.url, endpoint_kind="dns")
    google.cluster["controlPlaneEndpointsConfig"] = {
        "dnsEndpointConfig": {"endpoint": "gke-0123.europe-west4.gke.goog",
                              "allowExternalTraffic": True}
    }
    access = lookup_cluster(CLUSTER, _static("sa-token"), google.url, endpoint_kind="dns")
    # a publicly trusted certificate: no cluster CA pinned
    assert access.host == "https://gke-0123.europe-west4.gke.goog" and access.ca_pem is None


def test_a_token_endpoint_that_never_answers_fails_within_the_request_timeout(
    google: GoogleStub,
) -> None:
    """google-auth waits 120 s by default, past the Lambda's 55 s: an unreachable googleapis
    (a VPC Lambda without egress) ended as "Task timed out", naming nothing. Bounded by the
    request timeout now, and named."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    try:
        config = google.wif_config()
        config["token_url"] = f"http://127.0.0.1:{silent.getsockname()[1]}/sts/v1/token"
        started = time.monotonic()
        with pytest.raises(AuthError, match="token exchange failed"):
            access_token(wif_credentials(config), timeout_s=1.0)
        assert time.monotonic() - started < 10
    finally:
        silent.close()


def test_the_scalers_aws_clients_are_bounded_by_the_request_timeout() -> None:
    """botocore's defaults (60 s connect and read, three attempts) outlast the invocation."""
    from scaler.drain import CloudWatchDrain
    from scaler.queue import SqsQueues

    for client in (SqsQueues(timeout_s=3.0)._sqs, CloudWatchDrain(timeout_s=3.0)._cw):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (3.0, 3.0)
        assert config.retries["total_max_attempts"] == 2
