"""The outbound HTTP client against real local servers (the providers' stand-ins)."""

import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from config.core import outbound
from tests.channels.servers import HttpSink, start_http_sink
from tests.conftest import client_traceparents


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = start_http_sink()
    yield server
    server.stop()


@pytest.fixture
def other_sink() -> Iterator[HttpSink]:
    server = start_http_sink()
    yield server
    server.stop()


def test_a_redirect_is_the_answer_and_is_not_followed(sink: HttpSink, other_sink: HttpSink) -> None:
    sink.default = (302, {"Location": f"{other_sink.url}/elsewhere"}, b"")

    response = outbound.request("POST", f"{sink.url}/hook", body=b"{}", timeout=2)

    assert (response.status, response.headers["Location"]) == (302, f"{other_sink.url}/elsewhere")
    assert (len(sink.requests), other_sink.requests) == (1, [])


def test_a_host_resolving_to_a_private_address_is_refused_before_connecting(sink: HttpSink, settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False
    port = sink.server.server_address[1]

    with pytest.raises(outbound.Refused, match=r"localhost resolves to a private address"):
        outbound.request("GET", f"http://localhost:{port}/", timeout=2)

    assert sink.requests == []


def test_the_connection_goes_to_the_address_that_was_checked(sink: HttpSink, monkeypatch: Any) -> None:
    """The name is resolved once: a rebinding resolver's second answer is never asked for."""
    real_getaddrinfo = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebinding.test":
            return real_getaddrinfo(host, *args, **kwargs)
        asked.append(host)
        if len(asked) > 1:
            raise socket.gaierror(socket.EAI_NONAME, "a second lookup, after the check")
        return real_getaddrinfo("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = sink.server.server_address[1]

    response = outbound.request("GET", f"http://rebinding.test:{port}/feed?page=2", timeout=2)

    assert (response.status, asked) == (200, ["rebinding.test"])
    (request,) = sink.requests
    assert (request.path, request.headers["Host"]) == ("/feed?page=2", f"rebinding.test:{port}")


def _certificate_authority(tmp_path: Path, hostname: str) -> tuple[ssl.SSLContext, Path]:
    """A CA (its certificate written to a file) and a server context whose certificate it
    issued for `hostname`."""
    now = datetime.now(UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stand-in CA")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_file, chain_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(issue("Stand-in CA", ca_key, ca_key, ca=True).public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(issue(hostname, server_key, ca_key, ca=False).public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return context, ca_file


def _resolving(monkeypatch: Any, name: str, address: str) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(address if host == name else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def test_https_verifies_the_certificate_against_the_host_name_not_the_address(tmp_path: Path, monkeypatch: Any) -> None:
    """The connection goes to the checked address, yet TLS sends the host name (SNI) and checks
    the certificate against it, as every production provider needs."""
    context, ca_file = _certificate_authority(tmp_path, "provider.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    _resolving(monkeypatch, "provider.test", "127.0.0.1")
    sink = start_http_sink(tls=context)
    try:
        port = sink.server.server_address[1]
        response = outbound.request("POST", f"https://provider.test:{port}/send", body=b"{}", timeout=2)
        with pytest.raises(outbound.Unreachable, match="certificate"):
            outbound.request("POST", f"https://127.0.0.1:{port}/send", body=b"{}", timeout=2)
    finally:
        sink.stop()
    assert response.status == 200
    assert [(request.path, request.headers["Host"]) for request in sink.requests] == [
        ("/send", f"provider.test:{port}")
    ]


def test_the_body_read_is_bounded(sink: HttpSink) -> None:
    sink.default = (200, {}, b"x" * 5000)

    response = outbound.request("GET", sink.url, timeout=2, max_body=1000)

    assert (response.body, response.truncated) == (b"x" * 1000, True)


def test_a_slow_answer_times_out_within_the_bound(sink: HttpSink) -> None:
    sink.delay = 2.0
    started = time.monotonic()

    with pytest.raises(outbound.CallTimeout):
        outbound.request("POST", sink.url, body=b"{}", timeout=0.3)

    assert time.monotonic() - started < 0.6 + 0.3  # twice the timeout, plus scheduling slack


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(outbound.Unreachable):
        outbound.request("GET", f"http://127.0.0.1:{port}/", timeout=2)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://",
        "http://user:secret@127.0.0.1/",
        "http://127.0.0.1:99999/",
        f"http://{'a' * 64}.example/",
    ],
)
def test_urls_the_client_does_not_call_are_refused(url: str) -> None:
    with pytest.raises(outbound.Refused):
        outbound.request("GET", url, timeout=2)


def test_a_header_http_cannot_carry_is_refused(sink: HttpSink) -> None:
    with pytest.raises(outbound.Refused):
        outbound.request("GET", sink.url, headers={"Authorization": "Bearer a\r\nX-Injected: 1"}, timeout=2)

    assert sink.requests == []


def test_a_call_is_a_client_span_whose_traceparent_it_sends(sink: HttpSink, spans: InMemorySpanExporter) -> None:
    outbound.request("GET", f"{sink.url}/feed?key=secret", timeout=2)

    (span,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    (request,) = sink.requests
    assert {request.headers["traceparent"]} == client_traceparents(spans)
    assert span.attributes is not None
    assert (span.name, span.attributes["http.response.status_code"]) == ("GET", 200)
    assert span.attributes["url.full"] == f"{sink.url}/feed", "the query (it may hold a key) is left out"


def test_with_tracing_off_the_callers_span_is_still_propagated(sink: HttpSink) -> None:
    context = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )

    with trace.use_span(NonRecordingSpan(context)):
        outbound.request("GET", sink.url, timeout=2)

    (request,) = sink.requests
    assert request.headers["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_with_tracing_off_and_no_span_no_traceparent_is_sent(sink: HttpSink) -> None:
    outbound.request("GET", sink.url, timeout=2)

    (request,) = sink.requests
    assert "traceparent" not in {name.lower() for name in request.headers}
