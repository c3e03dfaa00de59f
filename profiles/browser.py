"""What a web page needs of Throughline, beside the tracking calls themselves: CORS, each
source's allowed origins, the settings documents the browser SDKs fetch before their first call,
and Segment's analytics.js itself, so the standard snippet needs no third-party CDN.

CORS is django-cors-headers' CorsMiddleware, wrapped around the views web pages call rather than
listed in settings.MIDDLEWARE: only these paths need it, and the WSGI fast path of /v1 (decide,
sessions) stands in for an exact middleware list, which a global CORS layer would turn off.
"""

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corsheaders.middleware import CorsMiddleware
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config.core.errors import Forbidden, NotFound, error_response
from config.core.views import SourceFacingApi
from profiles.contracts import SourceInfo
from profiles.writekey import source_authenticate, write_key_given

View = Callable[..., HttpResponseBase]

BUNDLE_DIR = Path(__file__).resolve().parent / "browser_sdk" / "analytics-next"
# analytics.min.js is looked up by the page on every load: a short cache lets a new pin reach
# pages within minutes. The chunks' names carry their content hash, so they never change.
LOADER_CACHE = "public, max-age=300"
CHUNK_CACHE = "public, max-age=31536000, immutable"
_CHUNK_NAME = re.compile(r"^[A-Za-z0-9_-]+\.bundle\.[0-9a-f]+\.js$")


def cors(view: View) -> View:
    """`view` with CORS: its preflight answered (and cached) before it runs, and the CORS
    headers on every answer it gives, errors included, so an SDK reads a 400 or 429 instead of
    seeing a network error it would retry."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return CorsMiddleware(lambda inner: view(inner, *args, **kwargs))(request)  # type: ignore[return-value]

    return wrapped


@functools.lru_cache(maxsize=1024)
def cors_headers(origin: str | None) -> tuple[tuple[str, str], ...]:
    """What `cors` adds to the answer to a POST from a page on `origin` (None: a call with no
    Origin, a server's or an app's: `Vary: origin` alone), computed by django-cors-headers itself
    on a probe request and kept per origin. The WSGI fast path adds these to its answers, so a
    page's call gets the same answer on both paths."""
    request = HttpRequest()
    request.method = "POST"
    request.path = request.path_info = "/v1/t"
    if origin is not None:
        request.META["HTTP_ORIGIN"] = origin
    response = CorsMiddleware(lambda inner: HttpResponse())(request)
    assert isinstance(response, HttpResponseBase), "a synchronous middleware answers synchronously"
    return tuple((name, value) for name, value in response.items() if name != "Content-Type")


def origin_check(source: SourceInfo, origin: str | None) -> None:
    """Refuse (403) a page whose origin the source does not allow. A call without an Origin
    header (a server, an app) is not a page's and passes: the list keeps other sites from using
    a public write key in their visitors' browsers, and is no authentication."""
    if origin and source.allowed_origins and origin not in source.allowed_origins:
        raise Forbidden(f"origin {origin} may not send with this write key", code="origin_not_allowed")


def browser_source(write_key: str | None, origin: str | None) -> SourceInfo:
    """The enabled source of `write_key`, for a page on `origin` (401, 403)."""
    source = source_authenticate({}, payload={"writeKey": write_key})
    origin_check(source, origin)
    return source


def segment_settings(write_key: str, *, api_host: str, protocol: str) -> dict[str, Any]:
    """The settings document analytics.js loads from <cdn>/v1/projects/<writeKey>/settings: its
    Segment.io integration sends every call back to `protocol`://`api_host`, and nothing else is
    loaded (no device-mode destinations, no remote plugins, no metrics to Segment)."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config(source: SourceInfo, write_key: str) -> dict[str, Any]:
    """The source configuration RudderStack's JS SDK v3 loads from <configUrl>/sourceConfig/:
    enabled, no device-mode destinations, no error or metrics reporting to RudderStack."""
    return {
        "isHosted": False,
        "source": {
            "id": str(source.id),
            "name": source.name,
            "writeKey": write_key,
            "workspaceId": "throughline",
            "enabled": source.enabled,
            "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }


_ERRORS = {
    401: OpenApiResponse(description="No or unknown write key."),
    403: OpenApiResponse(description="The source is disabled, or does not allow the page's origin."),
}


class SegmentSettingsApi(SourceFacingApi):
    @extend_schema(
        operation_id="browser_segment_settings",
        summary="analytics.js settings for a write key (Segment's CDN document)",
        description=(
            "What `@segment/analytics-next` fetches first when loaded by the snippet or with `cdnURL`: "
            "its `Segment.io` integration points the SDK back at this host."
        ),
        tags=["browser"],
        auth=[],
        responses={200: OpenApiResponse(description="The settings document."), **_ERRORS},
    )
    def get(self, request: Request, write_key: str) -> Response:
        browser_source(write_key, request.headers.get("Origin"))
        return Response(
            segment_settings(write_key, api_host=f"{request.get_host()}/v1", protocol=request.scheme or "http")
        )


class RudderStackSourceConfigApi(SourceFacingApi):
    @extend_schema(
        operation_id="browser_rudderstack_source_config",
        summary="RudderStack JS SDK source configuration",
        description="What `@rudderstack/analytics-js` fetches from `<configUrl>/sourceConfig/`.",
        tags=["browser"],
        auth=[{"writeKey": []}],  # type: ignore[list-item] # spectacular takes requirement objects
        parameters=[OpenApiParameter("writeKey", str, required=False, description="Alternative to Basic auth.")],
        responses={
            200: inline_serializer("RudderStackSourceConfig", {"source": serializers.DictField()}),
            **_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        write_key = write_key_given(request.META, payload={"writeKey": request.query_params.get("writeKey")})
        source = browser_source(write_key, request.headers.get("Origin"))
        return Response(rudderstack_source_config(source, str(write_key)))


@functools.cache
def _bundle_file(relative: str) -> bytes:
    return (BUNDLE_DIR / relative).read_bytes()


def _javascript(body: bytes, cache: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = cache
    return response


def analytics_js(request: HttpRequest, write_key: str) -> HttpResponse:
    """analytics-next's standalone bundle, as pinned by browser-sdks/package-lock.json: the same
    bytes for every write key (the bundle reads the key from its own URL or the snippet)."""
    return _javascript(_bundle_file("standalone.js"), LOADER_CACHE)


def analytics_js_chunk(request: HttpRequest, name: str) -> HttpResponse:
    """A chunk the standalone bundle loads on demand from <cdn>/analytics-next/bundles/."""
    if not _CHUNK_NAME.match(name) or not (BUNDLE_DIR / "bundles" / name).is_file():
        return error_response(NotFound(f"no analytics.js chunk named {name}"))
    return _javascript(_bundle_file(f"bundles/{name}"), CHUNK_CACHE)
