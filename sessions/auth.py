"""Write-key authentication for the sessions API: the source's one (profiles.facade.source_authenticate), with the
sessions rate limit counted for it (config.core.ratelimit.SESSIONS).

It takes the request's WSGI environ (`request.META`), so the WSGI fast path (fast_path.py),
which builds no Django request, authenticates exactly as the views do.
"""

from collections.abc import Mapping
from typing import Any

from config.core import ratelimit
from profiles.contracts import SourceInfo
from profiles.facade import source_authenticate


def source_for(environ: Mapping[str, Any]) -> SourceInfo:
    """The source calling (Basic auth only: a GET has no body to carry the key), counted."""
    source = source_authenticate(environ)
    ratelimit.hit(ratelimit.SESSIONS, str(source.id))
    return source
