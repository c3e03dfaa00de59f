"""Write-key authentication for everything a source calls (/v1 ingestion, sessions, decide).

A source authenticates with HTTP Basic (write key as user name, empty password), as Segment's
clients do, or, where the call has a JSON object body (ingestion, decide), with `writeKey` in
it. Every caller counts the source's rate limit itself (config.core.ratelimit), after this.
"""

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from config.core.errors import Forbidden, Unauthorized
from profiles.contracts import SourceInfo
from profiles.selectors import source_for_write_key

_MISSING_HEADER = "a write key is required: HTTP Basic auth with the write key as user name"
_MISSING = "a write key is required (Basic auth user name, or writeKey in the body)"


def has_credentials(environ: Mapping[str, Any]) -> bool:
    """True when the request carries an Authorization header (its key can be checked before the body is read)."""
    return bool(environ.get("HTTP_AUTHORIZATION"))


def source_authenticate(environ: Mapping[str, Any], *, payload: Mapping[str, Any] | None = None) -> SourceInfo:
    """The enabled source owning the request's write key: the Basic Authorization header's user
    name, else `writeKey` in `payload` (the decoded body) when the call takes one. 401 none,
    malformed or unknown; 403 disabled."""
    write_key = write_key_given(environ, payload=payload)
    if not write_key:
        raise Unauthorized(_MISSING_HEADER if payload is None else _MISSING)
    source = source_for_write_key(write_key)
    if source is None:
        raise Unauthorized("unknown write key", code="invalid_write_key")
    if not source.enabled:
        raise Forbidden("this source is disabled", code="source_disabled")
    return source


def write_key_given(environ: Mapping[str, Any], *, payload: Mapping[str, Any] | None = None) -> str | None:
    """The write key the request names, not yet checked: the Basic Authorization header's user
    name, else `writeKey` in `payload`. 401 on a malformed header."""
    write_key = _write_key_from_authorization(environ.get("HTTP_AUTHORIZATION", ""))
    if write_key is None and payload is not None:
        given = payload.get("writeKey")
        write_key = given if isinstance(given, str) else None
    return write_key or None


def _write_key_from_authorization(header: str) -> str | None:
    """The write key from an Authorization header's value; None when there is no header."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("use HTTP Basic auth with the write key as user name, or writeKey in the body")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials") from None
    return decoded.partition(":")[0]
