"""The base of the source-facing endpoints (/v1: ingestion, decide, sessions)."""

from rest_framework.views import APIView

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
