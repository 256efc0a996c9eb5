"""Where webhooks may send: the address rules, URL redaction, and the transport that
connects to the address it checked (a real HTTP and HTTPS server on 127.0.0.1 stands in
for a receiver whose name a stub resolver answers)."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pactmesh_delivery.adapters.egress import (
    EgressGuard,
    EgressRefused,
    PinnedTransport,
    RedactingFilter,
    Unresolved,
)
from pactmesh_delivery.domain.egress import (
    IPAddress,
    address_refusal,
    redact_url,
    url_refusal,
)

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link_local"),  # the cloud metadata service
        ("fe80::1", "link_local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not_global"),  # carrier-grade NAT
        ("fec0::1", "site_local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link_local"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "link_local"),  # 6to4 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_public_addresses_are_accepted(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_is_accepted_and_nothing_else() -> None:
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK) is None
    assert address_refusal(ipaddress.ip_address("::1"), LOOPBACK) is None
    assert address_refusal(ipaddress.ip_address("169.254.169.254"), LOOPBACK) == "link_local"
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), LOOPBACK) == "private"


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://hooks.example/in", False),
        ("http://hooks.example:8080/in?x=1", False),
        ("ftp://hooks.example/in", True),
        ("file:///etc/passwd", True),
        ("https://user:pw@hooks.example/in", True),
        ("https://token@hooks.example/in", True),
    ],
)
def test_urls_must_be_http_without_credentials(url: str, refused: bool) -> None:
    assert (url_refusal(url) is not None) is refused


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example/in", "https://hooks.example/in"),
        ("https://user:pw@hooks.example:8443/in", "https://hooks.example:8443/in"),
        (
            "https://hooks.example/in?token=s3cret&tenant=acme",
            "https://hooks.example/in?token=redacted&tenant=redacted",
        ),
        ("https://hooks.example/in?flag", "https://hooks.example/in?flag=redacted"),
        ("http://[::1]:9000/a#frag", "http://[::1]:9000/a"),
        ("https://HOOKS.example/In", "https://hooks.example/In"),
    ],
)
def test_urls_are_shown_without_credentials_or_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_httpx_log_lines_show_urls_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("httpx-under-test")
    logger.addFilter(RedactingFilter())
    url = httpx.URL("https://u:p@hooks.example/in?token=s3cret")
    with caplog.at_level(logging.INFO, logger="httpx-under-test"):
        logger.info('HTTP Request: %s %s "%s"', "POST", url, "HTTP/1.1 204")
    assert "s3cret" not in caplog.text
    assert "u:p" not in caplog.text
    assert "https://hooks.example/in?token=redacted" in caplog.text


# -- resolving and pinning ----------------------------------------------------------------


@dataclass
class Resolver:
    """Answers each name from a script, one answer per lookup (the last one repeats):
    a name that rebinds between two lookups."""

    answers: dict[str, list[list[str]]]
    asked: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        script = self.answers.get(host)
        if script is None:
            raise OSError(f"{host}: name or service not known")
        seen = self.asked.count(host)
        self.asked.append(host)
        return [ipaddress.ip_address(a) for a in script[min(seen, len(script) - 1)]]


async def test_the_guard_refuses_a_name_with_any_forbidden_answer() -> None:
    guard = EgressGuard(resolver=Resolver({"mixed.example": [["93.184.216.34", "10.0.0.7"]]}))
    with pytest.raises(EgressRefused, match="private"):
        await guard.addresses("mixed.example", 443)


async def test_the_guard_says_when_a_name_does_not_resolve() -> None:
    guard = EgressGuard(resolver=Resolver({}))
    with pytest.raises(Unresolved):
        await guard.addresses("nowhere.example", 443)


async def test_the_system_resolver_finds_localhost_on_loopback() -> None:
    with pytest.raises(EgressRefused, match="loopback"):
        await EgressGuard().addresses("localhost", 80)


async def test_the_guard_judges_literal_addresses_without_resolving() -> None:
    resolver = Resolver({})
    guard = EgressGuard(resolver=resolver)
    with pytest.raises(EgressRefused, match="loopback"):
        await guard.addresses("::1", 443)
    assert await guard.addresses("8.8.8.8", 443) == [ipaddress.ip_address("8.8.8.8")]
    assert resolver.asked == []


@dataclass
class Server:
    port: int
    hosts: list[str]
    """The ``Host`` header of every request received."""
    sni: list[str | None]
    """The TLS server name of every handshake (HTTPS only)."""


def _serve(tls: ssl.SSLContext | None) -> Iterator[Server]:
    hosts: list[str] = []
    sni: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(server.server_address[1], hosts, sni)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def http_server() -> Iterator[Server]:
    yield from _serve(None)


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (only), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cert, key = _certificate(tmp_path, "hooks.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for server in _serve(context):
        yield server, cert


def _client(guard: EgressGuard, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=PinnedTransport(guard, max_connections=4, verify=verify),
        follow_redirects=False,
    )


async def test_a_request_goes_to_the_checked_address_with_the_original_host(
    http_server: Server,
) -> None:
    guard = EgressGuard(allowed=LOOPBACK, resolver=Resolver({"hooks.example": [["127.0.0.1"]]}))
    async with _client(guard) as client:
        response = await client.post(f"http://hooks.example:{http_server.port}/in", content=b"{}")
    assert response.status_code == 204
    assert http_server.hosts == [f"hooks.example:{http_server.port}"]


async def test_a_name_rebound_to_a_private_address_after_registration_is_refused(
    http_server: Server,
) -> None:
    """Public when registered (the first lookup), loopback when sent: never connected."""
    resolver = Resolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    guard = EgressGuard(resolver=resolver)
    await guard.addresses("rebind.example", http_server.port)  # the registration's check

    async with _client(guard) as client:
        with pytest.raises(EgressRefused, match="loopback"):
            await client.post(f"http://rebind.example:{http_server.port}/in", content=b"{}")
    assert http_server.hosts == []
    assert resolver.asked == ["rebind.example", "rebind.example"]


async def test_tls_is_verified_for_the_original_name_over_the_pinned_address(
    tls_server: tuple[Server, Path],
) -> None:
    server, cert = tls_server
    trust = ssl.create_default_context(cafile=str(cert))
    resolver = Resolver({"hooks.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    guard = EgressGuard(allowed=LOOPBACK, resolver=resolver)
    async with _client(guard, verify=trust) as client:
        response = await client.post(f"https://hooks.example:{server.port}/in", content=b"{}")
        assert response.status_code == 204
        # The same address under a name the certificate does not hold: refused by TLS.
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|hostname"):
            await client.post(f"https://other.example:{server.port}/in", content=b"{}")
    assert server.sni[0] == "hooks.example"
    assert server.hosts == [f"hooks.example:{server.port}"]
