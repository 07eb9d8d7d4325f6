"""Google credentials for the Lambda, with no long-lived key anywhere by default.

* `wif` (default): Workload Identity Federation. google-auth's external-account (AWS) credentials
  sign a GetCallerIdentity request with the Lambda role's own temporary credentials (the runtime
  puts them in AWS_ACCESS_KEY_ID/…/AWS_SESSION_TOKEN), exchange it at Google STS, and impersonate
  the service account. SCALER_WIF_CONFIG holds the credential config (not a secret).
* `secret`: a service-account key JSON kept in AWS Secrets Manager, read at run time (never in the
  zip, the environment or an image).
"""

from __future__ import annotations

import functools
import json
from typing import Any

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class AuthError(RuntimeError):
    pass


def wif_credentials(info: dict[str, Any] | None) -> Any:
    import google.auth
    from google.auth import aws
    from google.auth.exceptions import GoogleAuthError

    try:
        if info is None:
            creds, _ = google.auth.default(scopes=SCOPES)
            return creds
        return aws.Credentials.from_info(info, scopes=SCOPES)
    except (GoogleAuthError, ValueError) as exc:
        raise AuthError(f"Google WIF credential config unusable: {exc}") from None


def secret_key_credentials(
    secret_id: str, client: Any | None = None, timeout_s: float = 10.0
) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError
    from google.oauth2 import service_account

    if client is None:
        from scaler import aws

        client = aws.client("secretsmanager", timeout_s)
    try:
        secret = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        raise AuthError(f"Secrets Manager {secret_id}: cannot read the key ({exc})") from None
    try:
        info = json.loads(secret)
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError) as exc:
        # never echo the secret itself
        raise AuthError(
            f"Secrets Manager {secret_id}: not a service-account key JSON ({type(exc).__name__})"
        ) from None


def access_token(credentials: Any, timeout_s: float = 10.0) -> str:
    """Refresh (token exchange) and return the bearer token; names what failed.

    Every HTTP call of the exchange (STS, IAM Credentials) is bounded by `timeout_s`:
    google-auth's own default is 120 s, past the Lambda's 55 s, so an unreachable googleapis
    ended in "Task timed out" instead of this error."""
    import google.auth.transport.requests
    from google.auth.exceptions import GoogleAuthError

    # a timeout google-auth passes itself still wins (call keywords override the partial's)
    request = functools.partial(google.auth.transport.requests.Request(), timeout=timeout_s)
    try:
        credentials.refresh(request)
    except (GoogleAuthError, OSError, ValueError) as exc:
        raise AuthError(f"Google token exchange failed: {exc}") from None
    token = getattr(credentials, "token", None)
    if not token:
        raise AuthError("Google token exchange returned no access token")
    return str(token)
