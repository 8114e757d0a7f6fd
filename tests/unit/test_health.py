"""health.probe over HTTPS: the chain is verified, the name is not (an ALB is probed by
its own DNS name while its certificate names the app)."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hadeploy import health


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path, "app.hadeploy.test")
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/healthz", cert
    finally:
        server.shutdown()
        server.server_close()


def test_https_probe_accepts_a_trusted_certificate_for_another_name(
        https_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = https_server
    default = health._tls_context

    def trusting() -> ssl.SSLContext:
        ctx = default()  # the real settings, plus the test's CA
        ctx.load_verify_locations(cert)
        return ctx

    monkeypatch.setattr(health, "_tls_context", trusting)
    result = health.probe(url, timeout=2)
    assert result.ok and result.status == 200, result.error


def test_https_probe_still_verifies_the_chain(https_server: tuple[str, Path]) -> None:
    url, _cert = https_server
    result = health.probe(url, timeout=2)
    assert not result.ok and "SSL" in (result.error or ""), result.error
