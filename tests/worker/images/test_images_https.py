"""The URL fetcher over TLS, as in production: a local HTTPS server with a certificate for
`images.test` (self-signed, made here), reached at the pinned address 127.0.0.1 with the name
kept for SNI and the certificate check."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from image_helpers import image_bytes

from worker.errors import ImageRejected
from worker.images.http_fetch import HttpImageFetcher
from worker.images.policy import ImageSourcePolicy


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = image_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, list[Any]]]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = _certificate(directory, "images.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[Any] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1]), cert, names
    httpd.shutdown()
    httpd.server_close()


def _fetcher(port: int, cert: Path, host: str) -> HttpImageFetcher:
    policy = ImageSourcePolicy.from_settings("", f"https://{host}:{port}", "127.0.0.0/8")
    return HttpImageFetcher(
        policy, max_bytes=100_000, timeout_s=5.0,
        resolver=lambda name, p: ["127.0.0.1"], tls=ssl.create_default_context(cafile=str(cert)),
    )


def test_https_to_the_pinned_address_keeps_the_name_for_sni_and_the_certificate(
    tls_server: tuple[int, Path, list[Any]],
) -> None:
    port, cert, names = tls_server
    names.clear()
    assert _fetcher(port, cert, "images.test").fetch(
        f"https://images.test:{port}/a.png"
    ) == image_bytes()
    assert names == ["images.test"]  # SNI: the name, although the socket went to 127.0.0.1


def test_a_certificate_for_another_name_is_refused_for_good(
    tls_server: tuple[int, Path, list[Any]],
) -> None:
    port, cert, _ = tls_server
    with pytest.raises(ImageRejected) as refused:
        _fetcher(port, cert, "other.test").fetch(f"https://other.test:{port}/a.png")
    assert refused.value.error_type == "ImageFetchFailed"
    assert "certificate" in str(refused.value)
