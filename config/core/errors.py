"""One error type for the domain, and one handler that turns every error into
`{"detail": ..., "code": ...}` with a 4xx status."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response


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


def error_response(exc: ApplicationError) -> JsonResponse:
    response = JsonResponse(exc.as_body(), status=exc.status_code)
    if isinstance(exc, RateLimited):
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
        headers = exc.headers() if isinstance(exc, RateLimited) else None
        return Response(exc.as_body(), status=exc.status_code, headers=headers)
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
