"""Write-key authentication for the sessions API, as ingestion does it (profiles.writekey).

The difference is where the per-source rate limit is counted: most writes count it here (one
Redis round trip, exactly as `source_authenticate`); a GET or a PATCH lets the store count it in
the same Redis round trip as its read of the session, which keeps a GET at one round trip.
"""

from django.conf import settings
from django.http import HttpRequest

from config.core import ratelimit
from config.core.errors import Forbidden, Unauthorized
from orchestration.sessions.store import RateLimit
from profiles.contracts import SourceInfo
from profiles.selectors import source_for_write_key
from profiles.writekey import write_key_from_header

BUCKET = "sessions"


def _source(request: HttpRequest) -> SourceInfo:
    write_key = write_key_from_header(request)
    if not write_key:
        raise Unauthorized("a write key is required: HTTP Basic auth with the write key as user name")
    source = source_for_write_key(write_key)
    if source is None:
        raise Unauthorized("unknown write key", code="invalid_write_key")
    if not source.enabled:
        raise Forbidden("this source is disabled", code="source_disabled")
    return source


def source_for_write(request: HttpRequest) -> SourceInfo:
    source = _source(request)
    ratelimit.hit(BUCKET, str(source.id), limit_per_second=settings.SESSIONS_RATE_LIMIT_PER_SECOND)
    return source


def source_for_read(request: HttpRequest) -> tuple[SourceInfo, RateLimit]:
    """The source, and the rate limit the store counts with its read (GET, and the read a
    PATCH starts with)."""
    source = _source(request)
    return source, RateLimit(BUCKET, str(source.id), settings.SESSIONS_RATE_LIMIT_PER_SECOND)
