"""The worker's SigV4 signer, held to botocore's SigV4Auth byte for byte (the reference AWS's
own SDK uses), for the one request shape the worker sends."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.sqs_signing import FrozenCredentials, Signer, host_header

NOW = datetime.datetime(2026, 12, 1, 19, 30, 5, tzinfo=datetime.UTC)


def botocore_headers(
    url: str, target: str, body: bytes, creds: FrozenCredentials, region: str
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    credentials = Credentials(creds.access_key, creds.secret_key, creds.token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
        SigV4Auth(credentials, "sqs", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjEXAMPLE//TOKEN+/="])
def test_the_signature_is_botocores(token: str | None) -> None:
    creds = FrozenCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = b'{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/q","Entries":[]}'
    host, target = "sqs.eu-west-1.amazonaws.com", "AmazonSQS.SendMessageBatch"
    ours = Signer("eu-west-1").headers(host, target, body, creds, now=NOW.timestamp())
    reference = botocore_headers(f"https://{host}/", target, body, creds, "eu-west-1")
    assert ours["authorization"] == reference["authorization"]
    assert ours["x-amz-date"] == reference["x-amz-date"] == "20261201T193005Z"
    assert ours.get("x-amz-security-token") == reference.get("x-amz-security-token") == token


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=2000),
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(["127.0.0.1", "LocalHost", "sqs.EU-west-1.amazonaws.com", "[::1]",
                          "user:pw@127.0.0.1"]),
    port=st.one_of(st.none(), st.sampled_from([80, 443]), st.integers(1, 65535)),
    secret=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
)
# a random run found this one: https on its default port, which botocore signs as the host alone
@example(body=b"", scheme="https", host="127.0.0.1", port=443, secret="0")
def test_the_signature_is_botocores_for_any_body_endpoint_and_secret(
    body: bytes, scheme: str, host: str, port: int | None, secret: str
) -> None:
    """The endpoint as a user writes it (any case, a default port spelled out, userinfo): the
    Host the transport sends and signs (`host_header`) gives botocore's signature."""
    url = f"{scheme}://{host}" + (f":{port}" if port else "") + "/"
    creds = FrozenCredentials("AKID", secret)
    signer = Signer("us-east-1")
    sent_host = host_header(url)
    ours = signer.headers(sent_host, "AmazonSQS.ReceiveMessage", body, creds, now=NOW.timestamp())
    again = signer.headers(sent_host, "AmazonSQS.ReceiveMessage", body, creds,
                           now=NOW.timestamp())
    assert ours == again  # the cached signing key gives the same signature
    reference = botocore_headers(url, "AmazonSQS.ReceiveMessage", body, creds, "us-east-1")
    assert ours["authorization"] == reference["authorization"]
