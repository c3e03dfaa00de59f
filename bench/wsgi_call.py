"""One in-process WSGI call, as the web server makes it: the profilers (bench/profile_*.py) use it
to time the application without HTTP or a load generator in the way. The environ and the call
are the ones the fast-path tests use (tests/wsgi.py)."""

from collections.abc import Callable
from typing import Any

from tests.wsgi import call, environ

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def wsgi_call(
    application: WSGIApp,
    method: str,
    path: str,
    body: bytes,
    *,
    authorization: str,
    content_type: str = "application/json",
    **headers: str,
) -> tuple[str, dict[str, str], bytes]:
    """Status line, response headers and body of one request; `headers` as keyword names
    (if_match="...") become HTTP_* environ keys. An empty `authorization` sends none."""
    request_headers = {
        **({"HTTP_AUTHORIZATION": authorization} if authorization else {}),
        "CONTENT_TYPE": content_type,
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    status, response_headers, content = call(application, environ(method, path, body, request_headers))
    return status, dict(response_headers), content
