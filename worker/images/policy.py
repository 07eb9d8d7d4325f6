"""Where image inputs may come from. Pure: no I/O (the HTTP fetcher resolves names and asks
`check_address` about each address it would connect to).

- `{"s3": ...}`: the bucket must be on WORKER_IMAGE_S3_BUCKETS (empty: no s3 inputs);
- `{"url": ...}`: scheme, host and port must match a WORKER_IMAGE_URL_ALLOW entry
  (`https://images.example.com`, `https://*.cdn.example.com`, `http://127.0.0.1:8080`), and
  every address the host resolves to must be public (not private, loopback, link-local,
  multicast, reserved or unspecified) unless inside a WORKER_IMAGE_ALLOW_NETWORKS network.
  Each redirect is checked the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from worker.contract.images import redacted_url
from worker.errors import ImageRejected

DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# the well-known NAT64 prefix (RFC 6052), whose low 32 bits carry the IPv4 address the packet
# reaches: on an IPv6-only cluster, 64:ff9b::10.0.0.5 is the private 10.0.0.5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges Python 3.11's ipaddress calls global that are not: site-local (fec0::/10,
# deprecated, still routed inside some networks), the local-use NAT64 prefix (RFC 8215: its
# operator picks the prefix length, so where the IPv4 address sits is unknown: a /64 made
# 64:ff9b:1:0:a:0:500:0 the private 10.0.0.5 read as the public 5.0.0.0), documentation (3fff::/20)
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n) for n in ("fec0::/10", "64:ff9b:1::/48", "3fff::/20")
)
# what a path or query may hold as it is (RFC 3986's unreserved, sub-delims, ":", "@", "/", and
# "%" of an escape already made); anything else, a space or a non-ASCII letter, is escaped, as a
# browser does: http.client refuses such a URL, and the same bytes come back every redelivery
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class UrlPattern:
    scheme: str
    host: str  # lower case; "*.example.com" matches subdomains of example.com (not itself)
    port: int

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


@dataclass(frozen=True)
class Target:
    """A URL checked against the allow-list: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, never empty

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_url_pattern(entry: str) -> UrlPattern:
    """One WORKER_IMAGE_URL_ALLOW entry; ValueError names what is wrong."""
    parts = urlsplit(entry.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"expected scheme://host[:port] (http or https), got {entry!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"a host, not a URL with a path or credentials: {entry!r}")
    host = parts.hostname.lower()
    if "*" in host and not (host.startswith("*.") and "*" not in host[2:] and "." in host[2:]):
        raise ValueError(f"a wildcard only as a first label of a domain (*.example.com): {entry!r}")
    return UrlPattern(parts.scheme, host, parts.port or DEFAULT_PORTS[parts.scheme])


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64, 6to4), else None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address: not private, loopback, link-local, shared
    (100.64/10), reserved (IPv4-compatible ::a.b.c.d among them), unspecified or multicast; an
    IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4) as that IPv4."""
    address = embedded_ipv4(address) or address
    if any(address in network for network in _NOT_GLOBAL):
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True)
class ImageSourcePolicy:
    s3_buckets: frozenset[str] = frozenset()
    url_patterns: tuple[UrlPattern, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, s3_buckets: str, url_allow: str, networks: str) -> ImageSourcePolicy:
        return cls(
            frozenset(_split(s3_buckets)),
            tuple(parse_url_pattern(e) for e in _split(url_allow)),
            tuple(ipaddress.ip_network(n, strict=False) for n in _split(networks)),
        )

    def check_bucket(self, bucket: str) -> None:
        if bucket not in self.s3_buckets:
            allowed = "none are" if not self.s3_buckets else "not on WORKER_IMAGE_S3_BUCKETS"
            raise ImageRejected(
                "ImageSourceNotAllowed", f"bucket {bucket[:100]!r} may not be read ({allowed})"
            )

    def check_url(self, url: str) -> Target:
        """The URL's target when its scheme, host and port are allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ImageRejected("ImageFetchFailed", f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if scheme not in DEFAULT_PORTS or not host:
            shown = redacted_url(url, 200)
            raise ImageRejected(
                "ImageSourceNotAllowed", f"only http(s) URLs with a host, not {shown!r}"
            )
        if parts.username or parts.password:
            raise ImageRejected("ImageSourceNotAllowed", "URLs with credentials are refused")
        port = port or DEFAULT_PORTS[scheme]
        _check_host(host)
        if not any(p.matches(scheme, host, port) for p in self.url_patterns):
            where = "no URL hosts are allowed" if not self.url_patterns else (
                "not on WORKER_IMAGE_URL_ALLOW"
            )
            raise ImageRejected(
                "ImageSourceNotAllowed", f"{scheme}://{host}:{port} may not be read ({where})"
            )
        path = quote(parts.path or "/", safe=_SAFE_PATH)
        if parts.query:
            path += "?" + quote(parts.query, safe=_SAFE_PATH + "?")
        return Target(scheme, host, port, path)

    def address_allowed(self, address: IPAddress) -> bool:
        address = embedded_ipv4(address) or address
        if any(address in network for network in self.allowed_networks):
            return True
        return is_public(address)

    def pick_address(self, host: str, addresses: Iterable[str]) -> str:
        """The first resolved address to connect to; every one must be allowed (a name that
        resolves to a public and a private address is refused, whatever the order)."""
        parsed: list[IPAddress] = []
        for text in addresses:
            try:
                parsed.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
        if not parsed:
            raise ImageRejected("ImageFetchFailed", f"{host}: resolves to no address")
        refused = [a for a in parsed if not self.address_allowed(a)]
        if refused:
            raise ImageRejected(
                "ImageSourceNotAllowed",
                f"{host} resolves to {refused[0]}: a private, loopback or link-local address "
                "(not on WORKER_IMAGE_ALLOW_NETWORKS)",
            )
        return str(parsed[0])


def _check_host(host: str) -> None:
    """A host no resolver can ever take (an empty label, one over 63 characters, a control
    character) is final. A NUL passed `*.example.com` (`x\\x00.example.com`) and the resolver
    then looked up the name before it: any name, on a request's say."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in host):
        raise ImageRejected("ImageFetchFailed", f"{host[:100]!r}: a control character in the host")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ImageRejected(
            "ImageFetchFailed", f"{host[:100]!r} is not a valid host name"
        ) from None
