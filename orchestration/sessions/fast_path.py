"""GET and PATCH /v1/sessions/{id} answered from the WSGI environ, without Django's request machinery.

Why: they are most of what channels call, and the handler around them cost more than the work.
Profiled in-process (bench/profile_ingest.py session-get --cprofile), a GET through the lean
Django stack spent about two thirds of its CPU outside the view: URL resolution (a fifth), the
request_started/request_finished signals, building the WSGIRequest and the HttpResponse, the
middleware and DRF's finalisation; the view itself is one Redis round trip and an orjson
encode. Here the same operations (apis.session_read and apis.session_write: the same write-key
auth, owner scoping, rate limit, body limit, services and selectors) run on the environ, and
the answer is built as bytes.

The answer is the one the Django view gives, header for header and byte for byte
(tests/orchestration/test_sessions_fast_path.py compares the two): JSON errors with the same
codes, rendered by DRF's renderer; ETag, 304 on If-None-Match, If-Match; DRF's Allow header;
SecurityMiddleware's headers (computed by SecurityMiddleware itself, once); X-Request-ID bound
for every log line of the request, as RequestIdMiddleware does; django.request's log line for a
4xx or 5xx; request_started and request_finished, so database connections are recycled as in
any request; and an unexpected exception becomes Django's own 500 response.

What it leaves to Django untouched (SessionFastPath passes the request on): any other path or
method; an Accept header the view would refuse (406); tracing on (its middleware opens the
request's span); SECURE_SSL_REDIRECT; and a lean middleware stack other than the one mirrored
here: a middleware added to settings.MIDDLEWARE turns the fast path off until it is mirrored
here too (a test says so).
"""

import re
from collections.abc import Callable, Iterable
from http.client import responses
from typing import Any

import structlog
from django.conf import settings
from django.core import signals
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.utils.log import log_response
from rest_framework.renderers import JSONRenderer

from config.core import observability
from config.core.errors import ApplicationError, RateLimited
from config.core.logs import request_id_for
from config.core.views import JSON_ACCEPTS
from orchestration.sessions import apis
from orchestration.sessions.concurrency import etag

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]

# The URLconf's `v1/` + `sessions/<uuid:session_id>` (Django's uuid converter: lower-case hex).
PATH = re.compile(r"/v1/sessions/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
# The lean /v1 stack (config.core.wsgi.source_api_middleware) whose effects are reproduced here.
MIRRORED_MIDDLEWARE = ("config.core.logs.RequestIdMiddleware", "django.middleware.security.SecurityMiddleware")


class Answer:
    """A response as WSGI sends it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def status_line(self) -> str:
        return f"{self.status} {responses.get(self.status, 'Unknown Status Code')}"


class _Probe(HttpRequest):
    def __init__(self, *, secure: bool):
        super().__init__()
        self._secure = secure

    def is_secure(self) -> bool:
        return self._secure


def _security_headers(*, secure: bool) -> Headers:
    """What SecurityMiddleware adds to a response of a plain or a secure request."""
    response = SecurityMiddleware(lambda request: HttpResponse()).process_response(
        _Probe(secure=secure), HttpResponse()
    )
    return [(name, value) for name, value in response.items() if name != "Content-Type"]


def _allow_headers() -> Headers:
    """The headers DRF's finalisation adds to every answer of the view (Allow)."""
    view = apis.SessionApi()
    view.setup(HttpRequest())
    return list(view.default_response_headers.items())


def _reader(environ: Environ) -> Callable[[int], bytes]:
    """read(n) of the body as WSGIRequest.read does it: at most Content-Length bytes."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]

    def read(size: int) -> bytes:
        return stream.read(min(size, length)) if length > 0 else b""

    return read


class SessionFastPath:
    """WSGI: GET and PATCH /v1/sessions/{id} here, everything else to `fallback`."""

    def __init__(self, fallback: WSGIApp, middleware: Iterable[str]):
        self.fallback = fallback
        # Off when the stack it stands in for does something it does not reproduce.
        self.active = tuple(middleware) == MIRRORED_MIDDLEWARE and not settings.SECURE_SSL_REDIRECT
        self.security = _security_headers(secure=False)
        self.secure_security = _security_headers(secure=True)
        self.allow = _allow_headers()
        self.renderer = JSONRenderer()

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        session_id = self.session_id(environ)
        if session_id is None:
            return self.fallback(environ, start_response)
        answer = self.answer(environ, session_id)
        start_response(answer.status_line, answer.headers)
        return [answer.body]

    def session_id(self, environ: Environ) -> str | None:
        """The session id when this request is one the fast path answers, else None."""
        if not self.active or environ.get("REQUEST_METHOD") not in ("GET", "PATCH"):
            return None
        match = PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        accept = environ.get("HTTP_ACCEPT", "")
        if accept and not any(kind in accept for kind in JSON_ACCEPTS):
            return None
        if observability.enabled():
            return None
        return match.group(1)

    def answer(self, environ: Environ, session_id: str) -> Answer:
        """The request answered, as the Django stack would: the middleware's work around the view's."""
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                answer, logged = self._view(environ, session_id)
            finally:
                structlog.contextvars.clear_contextvars()
            security = self.security
            if self.secure_security != security and WSGIRequest(environ).is_secure():
                security = self.secure_security
            names = {name.lower() for name, _ in answer.headers}
            answer.headers.extend(header for header in security if header[0].lower() not in names)
            answer.headers.append(("X-Request-ID", request_id))
            if answer.status >= 400 and not logged:
                request = WSGIRequest(environ)
                response = HttpResponse(status=answer.status)
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
            return answer
        finally:
            signals.request_finished.send(sender=self.__class__)

    def _view(self, environ: Environ, session_id: str) -> tuple[Answer, bool]:
        """What the view and DRF's finalisation answer; True when the answer was logged already."""
        try:
            if environ["REQUEST_METHOD"] == "GET":
                doc, not_modified = apis.session_read(environ, session_id)
                if not_modified:
                    headers = [("Content-Type", "text/html; charset=utf-8"), ("ETag", etag(doc.version))]
                    return Answer(304, [*headers, *self.allow], b""), False
            else:
                doc = apis.session_write(environ, _reader(environ), session_id)
            headers = [("Content-Type", "application/json"), ("ETag", etag(doc.version)), ("Cache-Control", "no-store")]
            return Answer(200, [*headers, *self.allow], apis.session_body(doc)), False
        except ApplicationError as error:
            # As config.core.errors.exception_handler answers it through DRF.
            headers = [("Content-Type", "application/json")]
            if isinstance(error, RateLimited):
                headers.append(("Retry-After", str(error.retry_after)))
            return Answer(error.status_code, [*headers, *self.allow], self.renderer.render(error.as_body())), False
        except Exception as exc:  # noqa: BLE001 - Django's answer to an unexpected error, logged by it
            response = response_for_exception(WSGIRequest(environ), exc)
            return Answer(response.status_code, list(response.items()), response.content), True
