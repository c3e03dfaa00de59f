"""The one outbound HTTP client: every call Throughline makes to another service (the channel
senders and their token endpoints, journey webhook steps, polling feeds) is `request()`.

- Server-side request forgery (OWASP API7): many of these URLs are set by users (a journey's
  webhook step, a polling feed) or by any write key (the `webhook_url` trait). The host is
  resolved once, every address it resolves to must be public (not private, loopback,
  link-local or multicast) unless OUTBOUND_ALLOW_PRIVATE_HOSTS is on, and the connection is made
  to an address that was checked: the name is never resolved again, so a DNS answer that
  changes after the check (rebinding) cannot lead the call into the service's own network.
  HTTPS still sends the host name (SNI) and verifies the certificate against it.
- Redirects are never followed: a 3xx is the answer (following one would lead past the check).
- Bounded: connecting and each wait for data get what is left of `timeout`, and reading the
  body stops once `timeout` has passed since the call began, so a call ends within twice its
  timeout even against a server that drips its answer; at most `max_body` bytes are read.
- One keep-alive connection pool per process (made on first use, after a prefork worker forks),
  keyed by the address connected to and the host name: a batch's send threads share them.
- With tracing on, each call is a client span and its `traceparent` names that span; with
  tracing off no span is made and `traceparent` is sent only when the caller runs inside a
  valid span context (docs/operations.md, "Tracing").
"""

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NewConnectionError,
    ReadTimeoutError,
)

from config.core import observability

if TYPE_CHECKING:
    from opentelemetry.trace import Span

DEFAULT_MAX_BODY = 64 * 1024
# Idle keep-alive connections kept per destination and process: a batch sends to one host from
# several threads at once, and each would otherwise open (and tear down) a connection.
POOL_CONNECTIONS_PER_HOST = 16
POOL_HOSTS = 64
READ_CHUNK = 16 * 1024


class OutboundError(Exception):
    """The call got no answer."""


class Refused(OutboundError):
    """Not sent, and sending again cannot help: not an http(s) URL with a host, a host that
    resolves to an address outbound calls may not reach, or a header http cannot carry."""


class Unreachable(OutboundError):
    """The host did not resolve, or the connection failed or broke before the whole answer."""


class CallTimeout(OutboundError):
    """No answer within the timeout."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive
    body: bytes  # at most max_body bytes
    truncated: bool  # the body was longer than max_body


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str  # the host name (or address) without brackets
    port: int
    authority: str  # what the Host header carries
    path: str  # path and query, as the request line carries them
    display: str  # the URL without its query, for spans and errors (a query may hold a key)


def target_check(url: str) -> None:
    """Raise Refused unless the URL is one `request()` would call (http or https, a host, a valid
    port, no credentials); does not resolve the host. For validating configuration."""
    _target(url)


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float,
    max_body: int = DEFAULT_MAX_BODY,
) -> Response:
    """Make one HTTP call and return its answer, whatever its status (a 3xx is not followed).
    Raises Refused (nothing sent), CallTimeout or Unreachable."""
    target = _target(url)
    sent = {"Host": target.authority, **(headers or {})}
    with _client_span(method, target) as span:
        deadline = time.monotonic() + timeout
        addresses = _addresses(target)
        _inject(sent)
        response, address = _open(method, target, addresses, headers=sent, body=body, deadline=deadline)
        try:
            answer, truncated = _read(response, max_body, deadline, timeout)
        finally:
            if not response.closed:
                response.close()  # not read to the end: the connection cannot be reused
            response.release_conn()
        if span is not None:
            _span_answer(span, response.status, address)
    return Response(response.status, response.reason or "", response.headers, answer, truncated)


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("only http and https URLs with a host are called")
    authority = parts.netloc
    if "@" in authority:
        raise Refused("URLs with credentials in them are not called")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (443 if parts.scheme == "https" else 80),
        authority=authority,
        path=path,
        display=f"{parts.scheme}://{authority}{parts.path}",
    )


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def _addresses(target: _Target) -> list[str]:
    """The addresses the host resolves to, in the resolver's order; Refused if any may not be
    reached (a name that also resolves to a private address is not called at all)."""
    try:
        answers = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except UnicodeError as error:
        raise Refused(f"not a valid host name: {error}") from None
    except OSError as error:
        # Often passing (the resolver restarting): as transient as a refused connection.
        raise Unreachable(f"{target.host} does not resolve: {error}") from None
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))
    if not settings.OUTBOUND_ALLOW_PRIVATE_HOSTS:
        for address in addresses:
            if _forbidden(address):
                raise Refused(f"{target.host} resolves to a private address ({address})")
    return addresses


_pools: dict[str, urllib3.PoolManager] = {}
_pool_lock = threading.Lock()


def _manager() -> urllib3.PoolManager:
    with _pool_lock:
        pool = _pools.get("http")
        if pool is None:
            pool = _pools["http"] = urllib3.PoolManager(
                num_pools=POOL_HOSTS, maxsize=POOL_CONNECTIONS_PER_HOST, block=False, retries=False
            )
        return pool


def _open(
    method: str,
    target: _Target,
    addresses: list[str],
    *,
    headers: dict[str, str],
    body: bytes | None,
    deadline: float,
) -> tuple[urllib3.BaseHTTPResponse, str]:
    """Send the request to the first checked address that accepts the connection."""
    failure = ""
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        pool_kwargs = {"server_hostname": target.host} if target.scheme == "https" else None
        try:
            pool = _manager().connection_from_host(address, target.port, target.scheme, pool_kwargs=pool_kwargs)
            response = pool.urlopen(
                method,
                target.path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=left, read=left),
                preload_content=False,
                release_conn=False,
            )
        except NewConnectionError as error:
            # Refused or unreachable before anything was sent: the next address may answer.
            failure = str(error)
            continue
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError) as error:
            raise CallTimeout(f"{target.display}: no answer within the timeout ({error})") from None
        except (LocationValueError, ValueError) as error:
            raise Refused(f"{target.display}: {error}") from None
        except (HTTPError, OSError) as error:
            raise Unreachable(f"{target.display}: {error}") from None
        return response, address
    if failure:
        raise Unreachable(f"{target.display}: {failure}")
    raise CallTimeout(f"{target.display}: no answer within the timeout")


def _read(response: urllib3.BaseHTTPResponse, max_body: int, deadline: float, timeout: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= max_body:
            chunk = response.read1(min(READ_CHUNK, max_body + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise CallTimeout(f"the answer took longer than {timeout}s")
    except (ReadTimeoutError, TimeoutError) as error:
        raise CallTimeout(f"the answer took longer than {timeout}s ({error})") from None
    except (HTTPError, OSError) as error:
        raise Unreachable(f"the answer broke off: {error}") from None
    answer = b"".join(chunks)
    return answer[:max_body], size > max_body


# --- tracing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _client_span(method: str, target: _Target) -> Iterator["Span | None"]:
    if not observability.enabled():
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("throughline.outbound")
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "server.address": target.host,
        "server.port": target.port,
        "url.full": target.display,
    }
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def _span_answer(span: "Span", status: int, address: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", status)
    span.set_attribute("network.peer.address", address)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def _inject(headers: dict[str, str]) -> None:
    """Add `traceparent` (and `tracestate`, baggage) of the current context: the client span's
    while tracing, else whatever valid span the caller runs in (none: nothing is added)."""
    from opentelemetry.propagate import inject

    inject(headers)
