"""The base of the source-facing endpoints (/v1: ingestion, decide, sessions), and the answer to
paths under /v1 and /api/v1 that no route matches."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from config.core.errors import NotFound

# Accept values DRF's negotiation matches to the JSON renderer (an absent header matches too).
JSON_ACCEPTS = ("application/json", "*/*", "application/*")


class SourceFacingApi(APIView):
    """A view answered with write-key auth inside the handler (clients may put the key in the
    body), so DRF's authentication, permission and throttle passes are empty. The hottest of
    these operations are served in production by the WSGI fast path (config/core/fast_path.py),
    which runs the operation the view runs and gives the view's answer."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []


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
