"""One error type for the domain, and one handler that turns every error into
`{"detail": ..., "code": ...}` with a 4xx status; and the one answer, in that shape, to an
error nothing expected: 503 `dependency_unavailable` with Retry-After when what failed is a
dependency (the database, Redis), else 500 `server_error`, outside the admin in every settings
module (UnexpectedErrorMiddleware, handler500, and the /v1 fast path)."""

import logging
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from django import db
from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# What a client is told to wait (Retry-After) when a dependency is down: long enough not to
# hammer a restarting database, short enough that a blip costs little.
DEPENDENCY_RETRY_AFTER_SECONDS = 5

# Django's admin keeps Django's own error pages.
ADMIN_PREFIX = "/admin/"
DJANGO_ANSWERS = (Http404, PermissionDenied, SuspiciousOperation, DjangoBadRequest, MultiPartParserError)


class ApplicationError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra or {}

    def as_body(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code, **self.extra}

    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the body's."""
        return {}


class BadRequest(ApplicationError):
    status_code = 400


class Unauthorized(ApplicationError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ApplicationError):
    status_code = 403
    code = "forbidden"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class Gone(ApplicationError):
    status_code = 410
    code = "gone"


class PreconditionFailed(ApplicationError):
    status_code = 412
    code = "precondition_failed"


class PreconditionRequired(ApplicationError):
    status_code = 428
    code = "precondition_required"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApplicationError):
    status_code = 415
    code = "unsupported_media_type"


class RateLimited(ApplicationError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """What clients read to wait: Retry-After (RFC 9110; Segment's server and browser
        libraries) and X-RateLimit-Reset in seconds (what older analytics.js builds read)."""
        return {"Retry-After": str(self.retry_after), "X-RateLimit-Reset": str(self.retry_after)}


class DependencyUnavailable(ApplicationError):
    """A dependency the request needs did not answer; nothing was done, the client may retry.
    The body names the dependency, never the error's text (it can carry a DSN or a host)."""

    status_code = 503
    code = "dependency_unavailable"

    def __init__(self, dependency: str):
        super().__init__(f"{dependency} unavailable, retry later", extra={"dependency": dependency})
        self.dependency = dependency

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)}


class ServerError(ApplicationError):
    status_code = 500
    code = "server_error"


def unavailable_dependency(exc: BaseException) -> str | None:
    """The dependency whose failure `exc` is (connection refused or lost, server shut down,
    too many connections, a statement cancelled), or None."""
    if isinstance(exc, (db.OperationalError, db.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)):
        return "database"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return "redis"
    return None


def unexpected_error(exc: BaseException | None) -> ApplicationError:
    """What an exception no code expected is answered as; logged here, once."""
    dependency = None if exc is None else unavailable_dependency(exc)
    if dependency is not None:
        logger.warning("%s unavailable: %s", dependency, type(exc).__name__)
        return DependencyUnavailable(dependency)
    logger.error("unexpected error", exc_info=exc)
    return ServerError("internal server error")


_renderer = JSONRenderer()


def unexpected_error_response(exc: BaseException | None) -> HttpResponse:
    """The answer to `exc`, rendered as DRF renders the API's errors (the /v1 fast path gives
    the same bytes)."""
    error = unexpected_error(exc)
    body = _renderer.render(error.as_body())
    response = HttpResponse(body, status=error.status_code, content_type="application/json")
    for name, value in error.headers().items():
        response[name] = value
    return response


class UnexpectedErrorMiddleware:
    """An exception a view raised and nothing handled (DRF's handler leaves them to Django):
    the JSON answer above instead of Django's HTML page, in DEBUG too. The admin is left alone."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # Those Django answers with a 4xx of its own (response_for_exception) stay its.
        if request.path.startswith(ADMIN_PREFIX) or isinstance(exception, DJANGO_ANSWERS):
            return None
        return unexpected_error_response(exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: what the middleware could not answer (an exception raised by a middleware),
    outside DEBUG. Django calls it inside its `except`, so the exception is the current one."""
    if request.path.startswith(ADMIN_PREFIX):
        return defaults.server_error(request)
    return unexpected_error_response(sys.exc_info()[1])


def error_response(exc: ApplicationError) -> JsonResponse:
    response = JsonResponse(exc.as_body(), status=exc.status_code)
    for name, value in exc.headers().items():
        response[name] = value
    if isinstance(exc, Unauthorized):
        response["WWW-Authenticate"] = 'Basic realm="throughline"'
    return response


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.as_body(), status=exc.status_code, headers=exc.headers() or None)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    # Imported here: DRF's views module loads the throttle classes, which import this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        body: dict[str, Any] = {"detail": _flatten(exc.detail), "code": code}
        if isinstance(exc, drf_exceptions.ValidationError):
            body["errors"] = exc.detail
        response.data = body
    return response
