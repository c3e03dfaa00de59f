"""WSGI calls made in-process, for the tests that compare a fast path with the Django stack."""

import io
import sys
from typing import Any

Answer = tuple[str, list[tuple[str, str]], bytes]


def environ(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """A request's environ as the web server builds it; `headers` are environ keys (HTTP_*)."""
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "HTTP_X_REQUEST_ID": "req-fixed-1",
        **headers,
    }


def call(app: Any, request: dict[str, Any]) -> Answer:
    """Status line, headers in order and body, the response closed as a server closes it."""
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: Any, exc_info: Any = None, /) -> Any:
        answer["status"], answer["headers"] = status, list(response_headers)
        return lambda data: None

    response = app(request, start_response)
    content = b"".join(response)
    getattr(response, "close", lambda: None)()
    return answer["status"], answer["headers"], content


def refuse(request: dict[str, Any], start_response: Any) -> Any:
    """A fallback for requests the fast path must answer itself."""
    raise AssertionError(f"handed to Django: {request['REQUEST_METHOD']} {request['PATH_INFO']}")


class Recorder:
    """A fallback that records what the fast path handed on."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: dict[str, Any], start_response: Any) -> Any:
        self.seen.append(f"{request['REQUEST_METHOD']} {request['PATH_INFO']}")
        start_response("204 No Content", [])
        return [b""]
