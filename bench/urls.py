"""The service's own URLs, and /bench/noop: a DRF @api_view that does nothing, as the ceiling
for a request through the same stack (the web server, middleware, DRF) that does no work."""

from django.urls import include, path
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response


@api_view(["GET", "POST"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def noop(request: Request) -> Response:
    return Response({"ok": True})


urlpatterns = [
    path("bench/noop", noop),
    path("", include("config.urls")),
]
