"""One in-process WSGI call, as the web server makes it: the profilers (bench/profile_*.py) use it
to time the application without HTTP or a load generator in the way."""

import io
import sys
from collections.abc import Callable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def wsgi_call(
    application: WSGIApp, method: str, path: str, body: bytes, *, authorization: str, **headers: str
) -> tuple[str, dict[str, str], bytes]:
    """Status line, response headers and body of one request; `headers` as keyword names
    (if_match="...") become HTTP_* environ keys."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": authorization,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: Any, exc_info: Any = None, /) -> Any:
        answer["status"], answer["headers"] = status, dict(response_headers)
        return lambda data: None

    response = application(environ, start_response)
    content = b"".join(response)
    getattr(response, "close", lambda: None)()
    return answer["status"], answer["headers"], content
