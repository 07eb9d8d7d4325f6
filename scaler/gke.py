"""The GKE adapter: cluster endpoint and CA from google-cloud-container's `get_cluster`.

REST transport (no gRPC channel to set up in a Lambda; and the tests point it at a local server).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


class GkeError(RuntimeError):
    pass


@dataclass(frozen=True)
class ClusterAccess:
    host: str
    ca_pem: bytes | None


def lookup_cluster(
    cluster_path: str,
    credentials: Any,
    api_endpoint: str | None = None,
    timeout_s: float = 10.0,
    endpoint_kind: str = "public",
) -> ClusterAccess:
    """`projects/P/locations/L/clusters/C` → https endpoint and the CA to verify it (PEM).

    endpoint_kind: `public` (the cluster's public IP, cluster CA), `private` (its private IP, for
    a Lambda in a VPC peered/VPN'd to the cluster's network, cluster CA) or `dns` (the DNS-based
    control-plane endpoint: IAM-authorised from anywhere, no IP allow-list to keep in step with
    Lambda's changing egress IPs, a publicly trusted certificate).
    """
    from google.api_core import exceptions as gexc
    from google.api_core.client_options import ClientOptions
    from google.api_core.retry import Retry
    from google.cloud.container_v1 import ClusterManagerClient

    options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
    client = ClusterManagerClient(credentials=credentials, transport="rest", client_options=options)
    try:
        cluster = client.get_cluster(
            name=cluster_path,
            timeout=timeout_s,
            # one retry on 503/connection errors, then report: the next run comes in a minute
            retry=Retry(initial=0.5, maximum=1.0, multiplier=2.0, timeout=min(timeout_s, 3.0)),
        )
    except gexc.GoogleAPIError as exc:
        raise GkeError(f"GKE get_cluster {cluster_path} failed: {exc}") from None
    except OSError as exc:
        raise GkeError(f"GKE API unreachable for {cluster_path}: {exc}") from None
    if endpoint_kind == "dns":
        dns = cluster.control_plane_endpoints_config.dns_endpoint_config
        if not dns.endpoint or not dns.allow_external_traffic:
            raise GkeError(
                f"GKE cluster {cluster_path}: DNS endpoint not enabled for external traffic "
                "(gcloud container clusters update … --enable-dns-access)"
            )
        return ClusterAccess(host=f"https://{dns.endpoint}", ca_pem=None)
    if endpoint_kind == "private":
        address = (
            cluster.private_cluster_config.private_endpoint
            or cluster.control_plane_endpoints_config.ip_endpoints_config.private_endpoint
        )
        if not address:
            raise GkeError(f"GKE cluster {cluster_path} has no private endpoint")
    else:
        address = cluster.endpoint
    if not address:
        raise GkeError(f"GKE cluster {cluster_path} has no endpoint yet (status {cluster.status})")
    ca_b64 = cluster.master_auth.cluster_ca_certificate if cluster.master_auth else ""
    try:
        ca = base64.b64decode(ca_b64) if ca_b64 else None
    except ValueError as exc:
        raise GkeError(f"GKE cluster {cluster_path}: CA certificate not base64 ({exc})") from None
    return ClusterAccess(host=f"https://{address}", ca_pem=ca)
