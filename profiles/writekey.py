"""Write-key authentication for everything a source calls (/v1 ingestion, sessions, decide).

A source authenticates with HTTP Basic (write key as user name, empty password), as Segment's
clients do, or with `writeKey` in the JSON body. Each authenticated call counts against the
source's rate limit.
"""

import base64
import binascii

from django.conf import settings
from django.http import HttpRequest

from config.core import ratelimit
from config.core.errors import Forbidden, Unauthorized
from profiles.contracts import SourceInfo
from profiles.selectors import source_for_write_key


def write_key_from_header(request: HttpRequest) -> str | None:
    """The write key from a Basic Authorization header; None when there is no header."""
    return write_key_from_authorization(request.META.get("HTTP_AUTHORIZATION", ""))


def write_key_from_authorization(header: str) -> str | None:
    """The write key from an Authorization header's value (for callers without a Django request)."""
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


def source_enabled(write_key: object, *, missing: str) -> SourceInfo:
    """The enabled source owning `write_key` (401 unknown or none, saying `missing`; 403
    disabled). Callers count the rate limit themselves."""
    if not isinstance(write_key, str) or not write_key:
        raise Unauthorized(missing)
    source = source_for_write_key(write_key)
    if source is None:
        raise Unauthorized("unknown write key", code="invalid_write_key")
    if not source.enabled:
        raise Forbidden("this source is disabled", code="source_disabled")
    return source


def source_authenticate(write_key: object, *, bucket: str = "ingest") -> SourceInfo:
    """The enabled source owning `write_key` (401 unknown, 403 disabled, 429 over its limit)."""
    source = source_enabled(
        write_key, missing="a write key is required (Basic auth user name, or writeKey in the body)"
    )
    ratelimit.hit(bucket, str(source.id), limit_per_second=settings.INGEST_RATE_LIMIT_PER_SECOND)
    return source
