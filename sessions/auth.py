"""Write-key authentication for the sessions API, as ingestion does it (profiles.writekey).

The difference is where the per-source rate limit is counted: most writes count it here (one
Redis round trip, exactly as `source_authenticate`); a GET or a PATCH lets the store count it in
the same Redis round trip as its read of the session, which keeps a GET at one round trip.

Each takes the request's WSGI environ (`request.META`), so the WSGI fast path (fast_path.py),
which builds no Django request, authenticates exactly as the views do.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from config.core import ratelimit
from profiles.contracts import SourceInfo
from profiles.writekey import source_enabled, write_key_from_authorization
from sessions.store import RateLimit

BUCKET = "sessions"


def _source(meta: Mapping[str, Any]) -> SourceInfo:
    return source_enabled(
        write_key_from_authorization(meta.get("HTTP_AUTHORIZATION", "")),
        missing="a write key is required: HTTP Basic auth with the write key as user name",
    )


def source_for_write(meta: Mapping[str, Any]) -> SourceInfo:
    source = _source(meta)
    ratelimit.hit(BUCKET, str(source.id), limit_per_second=settings.SESSIONS_RATE_LIMIT_PER_SECOND)
    return source


def source_for_read(meta: Mapping[str, Any]) -> tuple[SourceInfo, RateLimit]:
    """The source, and the rate limit the store counts with its read (GET, and the read a
    PATCH starts with)."""
    source = _source(meta)
    return source, RateLimit(BUCKET, str(source.id), settings.SESSIONS_RATE_LIMIT_PER_SECOND)
