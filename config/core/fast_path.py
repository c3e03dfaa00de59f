"""The hottest /v1 operations answered from the WSGI environ, without Django's request machinery:
the one fast mechanism of the /v1 edge.

Why: they are most of what sources and channels call, and the handler around them cost more
than, or as much as, the work. Profiled in-process, a session GET through the lean Django stack spent about
two thirds of its CPU outside the view (bench/profile_ingest.py session-get --cprofile), a
decide request about two fifths (bench/profile_decide.py --cprofile): URL resolution (a fifth
of a session GET, a seventh of a decide), the request_started/request_finished signals,
building the WSGIRequest and the HttpResponse and closing it, the middleware and DRF's
finalisation. Here each route's operation (the function its Django view calls too: the same
auth, rate limit, body reader, services and selectors) runs on the environ, and the answer is
built as bytes. The routes: POST of the tracking calls (/v1/track, identify, page, screen, group,
alias, batch, import: profiles/ingest_apis.py), GET and PATCH /v1/sessions/{id}
(sessions/fast_path.py) and POST /v1/decide (journeys/decide_apis.py);
config.core.wsgi puts this in front of the lean /v1 handler.

The answer is the one the Django view gives, header for header and byte for byte
(tests/profiles/test_ingest_fast_path.py, tests/sessions/test_fast_path.py and
tests/journeys/test_decide_fast_path.py compare the two): JSON errors with the same codes,
rendered by DRF's renderer; DRF's Allow header; SecurityMiddleware's headers (computed by
SecurityMiddleware itself, once); X-Request-ID bound for every log line of the request, as RequestIdMiddleware does;
django.request's log line for a 4xx or 5xx; request_started and request_finished, so database
connections are recycled as in any request; and an unexpected exception becomes
UnexpectedErrorMiddleware's JSON answer (503 with Retry-After for a dependency down, else 500).

What it leaves to Django untouched (FastPath passes the request on): any other path or method;
an Accept header the view would refuse (406) or one with parameters (DRF renders an error with
`indent=` indented); tracing on (its middleware opens the request's span);
SECURE_SSL_REDIRECT; and a lean middleware stack other than the one mirrored here: a middleware
added to settings.MIDDLEWARE turns the fast path off until it is mirrored here too (a test says
so).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import responses
from typing import Any

import structlog
from django.conf import settings
from django.core import signals
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.utils.log import log_response
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from config.core import observability
from config.core.errors import ApplicationError, unexpected_error_response
from config.core.logs import request_id_for
from config.core.views import JSON_ACCEPTS

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]

# The lean /v1 stack (config.core.wsgi.source_api_middleware) whose effects are reproduced here.
MIRRORED_MIDDLEWARE = (
    "config.core.logs.RequestIdMiddleware",
    "config.core.errors.UnexpectedErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
)


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


@dataclass(frozen=True, slots=True)
class Route:
    """One operation the fast path answers.

    `match(environ)`: None when the request is not this operation (method and path), else what
    `answer` needs of the path (the session id; True when there is nothing). `answer(environ,
    matched)`: the view's answer before DRF's finalisation, an ApplicationError raised as the
    view raises it. `view`: the Django view it stands in for (its Allow header is added, as
    DRF's finalisation does). `wrapped(environ)`: the headers a wrapper around that view adds to
    its answer after DRF's (the tracking calls' CORS wrapper: CORS headers for a page's call,
    `Vary: origin` for any)."""

    match: Callable[[Environ], Any]
    answer: Callable[[Environ, Any], Answer]
    view: type[APIView]
    wrapped: Callable[[Environ], Headers] = lambda environ: []


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


def _finalisation_headers(view_class: type[APIView]) -> Headers:
    """The headers DRF's finalisation adds to every answer of the view (Allow)."""
    view = view_class()
    view.setup(HttpRequest())
    return list(view.default_response_headers.items())


# A request the fast path answers: its route, DRF's headers for that view, what match returned.
Found = tuple[Route, Headers, Any]


class FastPath:
    """WSGI: the routes' operations here, everything else to `fallback`."""

    def __init__(self, fallback: WSGIApp, middleware: Iterable[str], routes: Iterable[Route]):
        self.fallback = fallback
        # Off when the stack it stands in for does something it does not reproduce.
        self.active = tuple(middleware) == MIRRORED_MIDDLEWARE and not settings.SECURE_SSL_REDIRECT
        self.routes = [(route, _finalisation_headers(route.view)) for route in routes]
        self.security = _security_headers(secure=False)
        self.secure_security = _security_headers(secure=True)
        self.renderer = JSONRenderer()

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        found = self.find(environ)
        if found is None:
            return self.fallback(environ, start_response)
        answer = self.answer(environ, found)
        start_response(answer.status_line, answer.headers)
        return [answer.body]

    def find(self, environ: Environ) -> Found | None:
        """The route and its match when this request is one the fast path answers, else None."""
        if not self.active:
            return None
        for entry in self.routes:
            matched = entry[0].match(environ)
            if matched is not None:
                break
        else:
            return None
        accept = environ.get("HTTP_ACCEPT", "")
        if accept and (";" in accept or not any(kind in accept for kind in JSON_ACCEPTS)):
            return None
        if observability.enabled():
            return None
        return entry[0], entry[1], matched

    def answer(self, environ: Environ, found: Found) -> Answer:
        """The request answered, as the Django stack would: the middleware's work around the view's."""
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                answer, logged = self._view(environ, found)
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

    def _view(self, environ: Environ, found: Found) -> tuple[Answer, bool]:
        """What the view and DRF's finalisation answer; True when the answer was logged already."""
        route, finalisation, matched = found
        try:
            answer = route.answer(environ, matched)
        except ApplicationError as error:
            # As config.core.errors.exception_handler answers it through DRF.
            headers = [("Content-Type", "application/json"), *error.headers().items()]
            body = self.renderer.render(error.as_body())
            return Answer(error.status_code, [*headers, *finalisation, *route.wrapped(environ)], body), False
        except Exception as exc:  # noqa: BLE001 - UnexpectedErrorMiddleware's answer
            # As the middleware answers it: after the view, so without DRF's finalisation.
            response = unexpected_error_response(exc)
            return Answer(response.status_code, list(response.items()), response.content), False
        answer.headers.extend(finalisation)
        answer.headers.extend(route.wrapped(environ))
        return answer, False
