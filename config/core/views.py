"""The base of the source-facing endpoints (/v1: ingestion, decide, sessions), and the answer to
paths under /v1 and /api/v1 that no route matches."""

from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from config.core.errors import NotFound

# Accept values DRF's negotiation matches to the JSON renderer (an absent header matches too).
JSON_ACCEPTS = ("application/json", "*/*", "application/*")


class SourceFacingApi(APIView):
    """A view answered with write-key auth inside the handler (clients may put the key in the
    body), so DRF's authentication, permission and throttle passes are empty.

    The methods in `fast_methods` are served by `fast_<method>(http, **kwargs)` on the Django
    request, skipping DRF's per-request work (its Request wrapper, content negotiation and the
    empty passes), which was more than a tenth of a /v1/track call and a large share of a
    session GET. Errors, other methods (405, OPTIONS) and other Accept headers (406) still go
    through DRF, so every answer is the one DRF gives."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []
    fast_methods: frozenset[str] = frozenset()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        method = request.method or ""
        accept = request.META.get("HTTP_ACCEPT", "")
        if method not in self.fast_methods or (accept and not any(kind in accept for kind in JSON_ACCEPTS)):
            return super().dispatch(request, *args, **kwargs)
        self.args, self.kwargs = args, kwargs
        self.headers = self.default_response_headers
        try:
            response = getattr(self, f"fast_{method.lower()}")(request, **kwargs)
        except Exception as exc:  # noqa: BLE001 - as DRF does; handle_exception re-raises the unknown
            drf_request = self.initialize_request(request, *args, **kwargs)
            self.request = drf_request
            return self.finalize_response(drf_request, self.handle_exception(exc), *args, **kwargs)
        return self.finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]


@extend_schema(exclude=True)
class NoRouteApi(APIView):
    """Every method of every path under /v1 and /api/v1 that no route matches (an unknown path,
    or an id that is not a UUID): a 404 in the API's one error shape. Without it Django answers
    them itself, with an HTML page (in DEBUG, one that lists the URL patterns)."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # initial() runs before the method's handler, whatever the method, inside DRF's
        # error handling.
        raise NotFound(f"no such endpoint: {request.path}")
