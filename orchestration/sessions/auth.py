"""Write-key authentication for the sessions API, as ingestion does it (profiles.writekey).

The difference is where the per-source rate limit is counted: most writes count it here (one
Redis round trip, exactly as `source_authenticate`); a GET or a PATCH lets the store count it in
the same Redis round trip as its read of the session, which keeps a GET at one round trip.
"""

from django.conf import settings
from django.http import HttpRequest

from config.core import ratelimit
from orchestration.sessions.store import RateLimit
from profiles.contracts import SourceInfo
from profiles.writekey import source_enabled, write_key_from_header

BUCKET = "sessions"


def _source(request: HttpRequest) -> SourceInfo:
    return source_enabled(
        write_key_from_header(request),
        missing="a write key is required: HTTP Basic auth with the write key as user name",
    )


def source_for_write(request: HttpRequest) -> SourceInfo:
    source = _source(request)
    ratelimit.hit(BUCKET, str(source.id), limit_per_second=settings.SESSIONS_RATE_LIMIT_PER_SECOND)
    return source


def source_for_read(request: HttpRequest) -> tuple[SourceInfo, RateLimit]:
    """The source, and the rate limit the store counts with its read (GET, and the read a
    PATCH starts with)."""
    source = _source(request)
    return source, RateLimit(BUCKET, str(source.id), settings.SESSIONS_RATE_LIMIT_PER_SECOND)
