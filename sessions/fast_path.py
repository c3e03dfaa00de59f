"""GET and PATCH /v1/sessions/{id} as a route of the WSGI fast path (config/core/fast_path.py,
which says why and what it keeps of the Django stack's answer).

The operations are apis.session_read and apis.session_write, the ones the views call: the same
write-key auth, owner scoping, rate limit, body limit, services and selectors.
"""

import re
from typing import Any

from config.core.fast_path import Answer, Environ, Route
from sessions import apis
from sessions.concurrency import etag

# The URLconf's `v1/` + `sessions/<uuid:session_id>` (Django's uuid converter: lower-case hex).
PATH = re.compile(r"/v1/sessions/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def _match(environ: Environ) -> str | None:
    """The session id of a GET or PATCH of one session."""
    if environ.get("REQUEST_METHOD") not in ("GET", "PATCH"):
        return None
    match = PATH.fullmatch(environ.get("PATH_INFO", ""))
    return None if match is None else match.group(1)


def _answer(environ: Environ, session_id: Any) -> Answer:
    if environ["REQUEST_METHOD"] == "GET":
        doc, not_modified = apis.session_read(environ, session_id)
        if not_modified:
            return Answer(304, [("Content-Type", "text/html; charset=utf-8"), ("ETag", etag(doc.version))], b"")
    else:
        doc = apis.session_write(environ, session_id)
    headers = [("Content-Type", "application/json"), ("ETag", etag(doc.version)), ("Cache-Control", "no-store")]
    return Answer(200, headers, apis.session_body(doc))


ROUTE = Route(match=_match, answer=_answer, view=apis.SessionApi)
