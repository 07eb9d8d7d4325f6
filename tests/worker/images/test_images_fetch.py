"""The image sources against real servers: the URL fetcher on a local HTTP server (the SSRF
guards: loopback refused unless allowed, hosts off the allow-list refused, every redirect
re-checked, the name resolved once and the checked address connected to), the S3 fetcher on
moto (403/404 final, 5xx transient), the byte limits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from image_helpers import image_bytes

from worker.errors import ImageRejected, RequestDeferred
from worker.images.http_fetch import HttpImageFetcher
from worker.images.policy import ImageSourcePolicy, parse_url_pattern
from worker.images.s3_fetch import S3ImageFetcher

REGION = "us-east-1"


def fetcher(allow: str, networks: str = "", **options: Any) -> HttpImageFetcher:
    policy = ImageSourcePolicy.from_settings("", allow, networks)
    options.setdefault("max_bytes", 100_000)
    options.setdefault("timeout_s", 5.0)
    return HttpImageFetcher(policy, **options)


@pytest.fixture(autouse=True)
def files(image_server: Any) -> None:
    image_server.files["/ok.png"] = image_bytes()
    image_server.files["/big.bin"] = bytes(200_000)


def refused(call: Any, error_type: str = "ImageSourceNotAllowed") -> str:
    with pytest.raises(ImageRejected) as info:
        call()
    assert info.value.error_type == error_type, str(info.value)
    return str(info.value)


def test_allowed_host_and_network_fetch(image_server: Any) -> None:
    fetch = fetcher(image_server.origin, "127.0.0.0/8")
    assert fetch.fetch(image_server.url("/ok.png")) == image_bytes()


def test_loopback_refused_without_the_network_setting(image_server: Any) -> None:
    before = image_server.hits.get("/ok.png", 0)
    message = refused(lambda: fetcher(image_server.origin).fetch(image_server.url("/ok.png")))
    assert "127.0.0.1" in message and "WORKER_IMAGE_ALLOW_NETWORKS" in message
    assert image_server.hits.get("/ok.png", 0) == before  # never connected


def test_host_not_on_the_allow_list_refused(image_server: Any) -> None:
    fetch = fetcher("https://images.example.com", "127.0.0.0/8")
    message = refused(lambda: fetch.fetch(image_server.url("/ok.png")))
    assert "not on WORKER_IMAGE_URL_ALLOW" in message
    # the port is part of the origin: the same host on another port is another origin
    other_port = fetcher("http://127.0.0.1:1", "127.0.0.0/8")
    refused(lambda: other_port.fetch(image_server.url("/ok.png")))
    assert "no URL hosts are allowed" in refused(lambda: fetcher("").fetch("https://a.b/c"))


def test_redirect_to_a_disallowed_host_refused(image_server: Any) -> None:
    fetch = fetcher(image_server.origin, "127.0.0.0/8")
    # allowed origin -> a host not on the list (the metadata service, say)
    hop = image_server.url("/redirect?to=http://169.254.169.254/latest/meta-data/")
    assert "169.254.169.254" in refused(lambda: fetch.fetch(hop))
    # allowed origin -> an allowed name that resolves to a refused address
    names = {"images.test": "127.0.0.1", "cdn.test": "10.0.0.7"}
    allow = f"http://images.test:{image_server.port},http://cdn.test:{image_server.port}"
    fetch = fetcher(allow, "127.0.0.0/8", resolver=lambda host, port: [names[host]])
    hop = f"http://images.test:{image_server.port}/redirect?to=http://cdn.test:{image_server.port}/ok.png"
    assert "10.0.0.7" in refused(lambda: fetch.fetch(hop))
    # allowed origin -> a host off the allow-list whose address would pass (an open redirect
    # to another site): the allow-list itself is checked again on every hop
    names = {"images.test": "127.0.0.1", "elsewhere.test": "127.0.0.1"}
    fetch = fetcher(f"http://images.test:{image_server.port}", "127.0.0.0/8",
                    resolver=lambda host, port: [names[host]])
    hop = (f"http://images.test:{image_server.port}/redirect"
           f"?to=http://elsewhere.test:{image_server.port}/ok.png")
    assert "elsewhere.test" in refused(lambda: fetch.fetch(hop))
    # a redirect that stays on allowed ground is followed
    ok = image_server.url(f"/redirect?to={image_server.url('/ok.png')}")
    assert fetcher(image_server.origin, "127.0.0.0/8").fetch(ok) == image_bytes()


def test_too_many_redirects(image_server: Any) -> None:
    url = image_server.url("/ok.png")
    for _ in range(4):
        url = image_server.url(f"/redirect?to={url}")
    message = refused(lambda: fetcher(image_server.origin, "127.0.0.0/8").fetch(url),
                      "ImageFetchFailed")
    assert "redirects" in message


def test_the_name_is_resolved_once_and_the_checked_address_connected_to(
    image_server: Any,
) -> None:
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]  # a name the system resolver does not know: only this can work

    fetch = fetcher(f"http://images.test:{image_server.port}", "127.0.0.0/8", resolver=resolver)
    image_server.host_headers.clear()
    assert fetch.fetch(f"http://images.test:{image_server.port}/ok.png") == image_bytes()
    assert calls == ["images.test"]
    assert image_server.host_headers == [f"images.test:{image_server.port}"]


def test_a_name_with_any_refused_address_is_refused(image_server: Any) -> None:
    # rebinding-style answers: a public address first, loopback second
    fetch = fetcher(f"http://images.test:{image_server.port}",
                    resolver=lambda host, port: ["93.184.216.34", "127.0.0.1"])
    assert "127.0.0.1" in refused(lambda: fetch.fetch(f"http://images.test:{image_server.port}/x"))
    mapped = fetcher(f"http://images.test:{image_server.port}",
                     resolver=lambda host, port: ["::ffff:127.0.0.1"])
    refused(lambda: mapped.fetch(f"http://images.test:{image_server.port}/x"))


def test_status_codes_final_or_transient(image_server: Any) -> None:
    fetch = fetcher(image_server.origin, "127.0.0.0/8")
    for code in (403, 404, 410):
        assert str(code) in refused(
            lambda c=code: fetch.fetch(image_server.url(f"/status/{c}")), "ImageFetchFailed"
        )
    for code in (500, 503, 429):
        with pytest.raises(RequestDeferred) as info:
            fetch.fetch(image_server.url(f"/status/{code}"))
        assert info.value.error_type == "ImageFetchFailed"


def test_a_presigned_urls_signature_and_token_stay_out_of_the_error(image_server: Any) -> None:
    """A transient failure's message (logged on every retry) held the URL's first 300
    characters: a presigned URL's access key, session token and signature with them."""
    fetch = fetcher(image_server.origin, "127.0.0.0/8")
    signed = image_server.url("/status/503") + (
        "?X-Amz-Credential=ASIAEXAMPLEKEY%2F20261207&X-Amz-Security-Token=SESSIONTOKEN"
        "&X-Amz-Signature=deadbeef"
    )
    with pytest.raises(RequestDeferred) as info:
        fetch.fetch(signed)
    message = str(info.value)
    assert "/status/503" in message and "503" in message
    assert not any(s in message for s in ("ASIAEXAMPLEKEY", "SESSIONTOKEN", "deadbeef"))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield int(listener.getsockname()[1])
    listener.close()


def test_a_timeout_is_transient(silent_port: int) -> None:
    fetch = fetcher(f"http://127.0.0.1:{silent_port}", "127.0.0.0/8", timeout_s=0.3)
    with pytest.raises(RequestDeferred, match="timed out"):
        fetch.fetch(f"http://127.0.0.1:{silent_port}/x.png")


def test_byte_limit(image_server: Any) -> None:
    fetch = fetcher(image_server.origin, "127.0.0.0/8", max_bytes=100_000)
    # declared: refused from the Content-Length, before the body is read
    message = refused(lambda: fetch.fetch(image_server.url("/big.bin")), "ImageTooLarge")
    assert "WORKER_IMAGE_MAX_BYTES" in message
    assert ": 200000 bytes" in message  # the declared size, not "over" what was read
    # undeclared: refused once the body read passes the limit, never read further
    message = refused(lambda: fetch.fetch(image_server.url("/undeclared/big.bin")),
                      "ImageTooLarge")
    assert "over" in message
    assert fetch.fetch(image_server.url("/undeclared/ok.png")) == image_bytes()


def test_url_patterns() -> None:
    wildcard = parse_url_pattern("https://*.cdn.example.com")
    assert wildcard.matches("https", "a.cdn.example.com", 443)
    assert not wildcard.matches("https", "cdn.example.com", 443)
    assert not wildcard.matches("https", "a.cdn.example.com.evil.net", 443)
    assert not wildcard.matches("http", "a.cdn.example.com", 443)
    for bad in ("images.example.com", "ftp://x", "https://x/path", "https://a*.x.com"):
        with pytest.raises(ValueError):
            parse_url_pattern(bad)


# ---------------------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3(moto_server: Any) -> Any:
    client = boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name=REGION)
    client.create_bucket(Bucket="gq-fetch")
    client.put_object(Bucket="gq-fetch", Key="a.png", Body=image_bytes())
    client.put_object(Bucket="gq-fetch", Key="big.bin", Body=bytes(200_000))
    return client


def s3_fetcher(client: Any, buckets: str = "gq-fetch") -> S3ImageFetcher:
    return S3ImageFetcher(
        client, ImageSourcePolicy.from_settings(buckets, "", ""), max_bytes=100_000
    )


def test_s3_reads_allowed_buckets_only(s3: Any) -> None:
    assert s3_fetcher(s3).fetch("s3://gq-fetch/a.png") == image_bytes()
    assert "none are" in refused(lambda: s3_fetcher(s3, "").fetch("s3://gq-fetch/a.png"))
    assert "gq-fetch" in refused(lambda: s3_fetcher(s3, "other").fetch("s3://gq-fetch/a.png"))


def test_s3_missing_key_is_final_and_too_large_refused(s3: Any) -> None:
    message = refused(lambda: s3_fetcher(s3).fetch("s3://gq-fetch/nope.png"), "ImageFetchFailed")
    assert "404" in message or "NoSuchKey" in message
    refused(lambda: s3_fetcher(s3).fetch("s3://gq-fetch/big.bin"), "ImageTooLarge")


def test_s3_answering_5xx_is_transient(image_server: Any) -> None:
    client = boto3.client(
        "s3", endpoint_url=image_server.origin, region_name=REGION,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    with pytest.raises(RequestDeferred) as info:
        s3_fetcher(client, "failing-bucket").fetch("s3://failing-bucket/a.png")
    assert "503" in str(info.value)


def test_a_path_with_a_space_or_a_non_ascii_letter_is_fetched_escaped(image_server: Any) -> None:
    """http.client refuses such a path (InvalidURL, UnicodeEncodeError): it was retried as
    transient, the same at every redelivery, until the DLQ. Escaped as a browser would, it is
    fetched; what the server was asked for is the escaped path."""
    image_server.files["/my%20photo.png"] = image_bytes()
    image_server.files["/caf%C3%A9.png"] = image_bytes(seed=1)
    fetch = fetcher(image_server.origin, "127.0.0.0/8")
    assert fetch.fetch(image_server.url("/my photo.png")) == image_bytes()
    assert fetch.fetch(image_server.url("/café.png?v=é 1")) == image_bytes(seed=1)
    assert image_server.hits["/caf%C3%A9.png"] == 1
    # an escape already made stays as it is
    assert fetch.fetch(image_server.url("/my%20photo.png")) == image_bytes()


def test_a_host_with_a_control_character_is_refused_before_any_lookup() -> None:
    """`x\\x00.example.com` passed `*.example.com`, and getaddrinfo looked up only the part
    before the NUL: a request could make the worker look up any name (and the failed lookup
    was redelivered to the DLQ)."""
    looked_up: list[str] = []
    fetch = fetcher(
        "https://*.cdn.example.com", resolver=lambda host, port: looked_up.append(host) or []
    )
    for host in ("evil\x00.cdn.example.com", "a\x01b.cdn.example.com"):
        assert "control character" in refused(
            lambda h=host: fetch.fetch(f"https://{h}/x.jpg"), "ImageFetchFailed"  # type: ignore[misc]
        )
    assert looked_up == []


@pytest.mark.parametrize("host", ["a" * 64 + ".cdn.example.com", "bad..cdn.example.com"])
def test_a_host_name_no_resolver_can_take_is_final(host: str) -> None:
    fetch = fetcher("https://*.cdn.example.com")
    assert "is not a valid host name" in refused(
        lambda: fetch.fetch(f"https://{host}/x.jpg"), "ImageFetchFailed"
    )


@pytest.mark.parametrize(
    "address",
    [
        "::7f00:1",  # IPv4-compatible ::127.0.0.1 (reserved)
        "::a9fe:a9fe",  # ::169.254.169.254, the metadata server
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254: reaches it on an IPv6-only cluster
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
        "2002:a00:5::1",  # 6to4 of 10.0.0.5
        # ipaddress calls these global; they are not (they passed before):
        "fec0::1",  # site-local, still routed inside some networks
        "64:ff9b:1:0:a:0:500:0",  # local-use NAT64 with a /64: 10.0.0.5, read as 5.0.0.0
        "3fff::1",  # documentation
    ],
)
def test_an_ipv6_address_that_carries_a_private_ipv4_one_is_refused(address: str) -> None:
    policy = ImageSourcePolicy.from_settings("", "https://img.example.com", "")
    with pytest.raises(ImageRejected, match="a private, loopback or link-local address"):
        policy.pick_address("img.example.com", [address])
    # NAT64 of a public address is how an IPv6-only pod reaches it: allowed
    assert policy.pick_address("img.example.com", ["64:ff9b::808:808"]) == "64:ff9b::808:808"


@pytest.fixture(params=["body", "headers"])
def dripping_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A server that sends its answer slowly: the headers, then the body a byte every 0.3 s;
    or the headers themselves, a header line every 0.3 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n"
    if request.param == "body":
        parts = [head + b"\r\n"] + [b"x"] * 20
    else:
        parts = [head] + [b"X-Slow: %d\r\n" % i for i in range(20)] + [b"\r\n" + b"x" * 20]

    def serve() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        for index, part in enumerate(parts):
            if index and stop.wait(0.3):
                break
            try:
                connection.sendall(part)
            except OSError:
                break
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    listener.close()
    thread.join(5)


def test_the_fetch_timeout_bounds_an_answer_sent_a_little_at_a_time(dripping_port: int) -> None:
    """Each 256 KiB read waited for a whole chunk with a fresh timeout: 20 bytes at 0.3 s held
    a 1 s fetch for 6 s. The headers had the same hole: each header line read got the socket's
    whole timeout again (20 lines at 0.3 s: 6 s)."""
    fetch = fetcher(f"http://127.0.0.1:{dripping_port}", "127.0.0.0/8", timeout_s=1.0)
    began = time.monotonic()
    with pytest.raises(RequestDeferred, match="timed out"):
        fetch.fetch(f"http://127.0.0.1:{dripping_port}/slow.png")
    assert time.monotonic() - began < 1.5


def test_the_fetch_timeout_bounds_a_name_that_takes_long_to_resolve() -> None:
    """getaddrinfo has no timeout of its own (the system resolver's retries can take 30 s): a
    lookup that never answered held the encoder thread past WORKER_IMAGE_FETCH_TIMEOUT_S."""
    answered = threading.Event()

    def hung_resolver(host: str, port: int) -> list[str]:
        answered.wait(10)  # released below, once the fetch has given up
        return ["127.0.0.1"]

    fetch = fetcher("http://images.test", "127.0.0.0/8", timeout_s=0.5, resolver=hung_resolver)
    began = time.monotonic()
    try:
        with pytest.raises(RequestDeferred, match="resolve"):
            fetch.fetch("http://images.test/ok.png")
        assert time.monotonic() - began < 1.5
    finally:
        answered.set()
