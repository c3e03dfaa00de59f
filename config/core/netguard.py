"""Outbound requests to URLs that users configure (journey webhook steps) must not reach the
service's own network: the metadata endpoint, the database, the admin on localhost (OWASP API7,
server-side request forgery)."""

import ipaddress
import socket
from urllib.parse import urlsplit


class ForbiddenDestination(ValueError):
    """The URL resolves to an address outbound calls may not reach."""


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def destination_check(url: str, *, allow_private: bool) -> None:
    """Raise ForbiddenDestination unless every address the URL's host resolves to is public.
    The name is resolved again when the request connects, so a rebinding DNS answer can still
    slip through; a deployment that must close that gap sends webhooks through an egress proxy."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenDestination("only http and https URLs with a host are called")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        answers = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise ForbiddenDestination(f"{parts.hostname} does not resolve: {error}") from error
    for *_, sockaddr in answers:
        if _forbidden(str(sockaddr[0])):
            raise ForbiddenDestination(f"{parts.hostname} resolves to a private address ({sockaddr[0]})")
