"""The Segment-compatible tracking API: /v1/identify, track, page, screen, group, alias, batch, import,
and the paths the browser and mobile SDKs use for them (/v1/t, ..., /v1/b: profiles/ingest_urls.py).

Thin by design: authenticate the source, read the body within the limits (config.core.body), hand
the messages to `event_ingest`, answer. `ingest_call` works on the WSGI environ, so the views and
the WSGI fast path (FAST_ROUTE, config/core/fast_path.py: how production serves these calls) run
the same code and give the same answer.
"""

import json
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

import orjson
import structlog
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

from config.core import metrics, ratelimit
from config.core.body import read_body
from config.core.errors import ApplicationError, BadRequest
from config.core.fast_path import Answer, Environ, Route
from config.core.views import SourceFacingApi
from profiles.browser import cors_headers, origin_check
from profiles.contracts import SourceInfo
from profiles.ingest import IngestResult, event_ingest, message_quarantine
from profiles.messages import MessageError, NonFiniteNumber, check_values, json_text, json_type
from profiles.writekey import has_credentials, source_authenticate


def _json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _loads(body: bytes) -> Any:
    """The body's JSON. orjson refuses a whole body for one lone UTF-16 surrogate escape
    (`"\\ud800"`) or one number too large for a double (`1e309`), values that are valid JSON
    syntax; Python's reader then takes the body, so that only the messages holding them are
    quarantined (profiles/messages.py check_values) and the others stored. Integers outside
    64 bits become floats, as orjson reads them."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            return json.loads(
                body.decode("utf-8"), parse_int=_json_int, parse_float=_json_float, parse_constant=_no_constant
            )
        except (ValueError, RecursionError):
            raise error from None


def _json_int(text: str) -> int | float:
    value = int(text) if len(text) <= 20 else None
    return value if value is not None and -(2**63) <= value < 2**64 else _json_float(text)


def _json_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else NonFiniteNumber(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(body: bytes, source: SourceInfo | None, received_at: Any) -> dict[str, Any]:
    try:
        payload = _loads(body)
    except orjson.JSONDecodeError as error:
        if source is not None:
            message_quarantine(
                source=source,
                raw=None,
                raw_text=body.decode("utf-8", "replace"),
                code="malformed_json",
                detail=str(error),
                received_at=received_at,
            )
        raise BadRequest(f"body is not valid JSON: {error}", code="malformed_json") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"body must be a JSON object, not {json_type(payload)}", code="invalid_body")
    return payload


_ACCEPTED = inline_serializer(
    "IngestAccepted",
    {
        "success": serializers.BooleanField(),
        "accepted": serializers.IntegerField(help_text="Events stored by this call."),
        "duplicates": serializers.IntegerField(help_text="Messages whose messageId this source had already sent."),
        "suppressed": serializers.IntegerField(
            help_text="Messages of people erased with suppression: acknowledged, not stored."
        ),
        "rejected": serializers.IntegerField(help_text="Messages quarantined; see errors."),
        "errors": serializers.ListField(
            child=inline_serializer(
                "IngestRejection",
                {
                    "index": serializers.IntegerField(),
                    "code": serializers.CharField(),
                    "detail": serializers.CharField(),
                },
            )
        ),
    },
)
_ERROR = inline_serializer("Error", {"detail": serializers.CharField(), "code": serializers.CharField()})
_ERROR_RESPONSES = {
    400: OpenApiResponse(
        _ERROR,
        description="Malformed JSON, not an object, missing identity, an invalid field, a value PostgreSQL "
        "cannot store (NUL, a lone surrogate, a non-finite number), nesting past 64 levels, or a time "
        "out of range: the codes are the quarantine reasons (docs/profiles.md).",
    ),
    401: OpenApiResponse(_ERROR, description="No or unknown write key."),
    403: OpenApiResponse(_ERROR, description="The source is disabled."),
    413: OpenApiResponse(_ERROR, description="Over a size limit (32 KB per message, 500 KB per batch)."),
    415: OpenApiResponse(_ERROR, description="Unsupported Content-Encoding."),
    429: OpenApiResponse(_ERROR, description="Over the source's rate limit; see Retry-After."),
}


def _message_fields(extra: dict[str, serializers.Field]) -> dict[str, serializers.Field]:
    return {
        "userId": serializers.CharField(required=False, help_text="userId or anonymousId is required."),
        "anonymousId": serializers.CharField(required=False),
        "messageId": serializers.CharField(required=False, help_text="Deduplication key, per source."),
        "timestamp": serializers.DateTimeField(required=False, help_text="Kept as given when present."),
        "originalTimestamp": serializers.DateTimeField(required=False),
        "sentAt": serializers.DateTimeField(required=False),
        "context": serializers.DictField(required=False),
        "integrations": serializers.DictField(required=False),
        "writeKey": serializers.CharField(required=False, help_text="Alternative to Basic auth."),
        **extra,
    }


_MESSAGE_SHAPES: dict[str, dict[str, serializers.Field]] = {
    "identify": {"traits": serializers.DictField(required=False)},
    "track": {"event": serializers.CharField(), "properties": serializers.DictField(required=False)},
    "page": {"name": serializers.CharField(required=False), "properties": serializers.DictField(required=False)},
    "screen": {"name": serializers.CharField(required=False), "properties": serializers.DictField(required=False)},
    "group": {"groupId": serializers.CharField(), "traits": serializers.DictField(required=False)},
    "alias": {"previousId": serializers.CharField()},
}


def ingest_call(environ: Mapping[str, Any], call_type: str | None) -> tuple[int, dict[str, Any]]:
    """POST /v1/<call_type> (None: batch or import) on the request's WSGI environ: the status
    and JSON body of the answer, an ApplicationError when the call is refused whole."""
    started = time.perf_counter()
    received_at = timezone.now()
    source: SourceInfo | None = None
    try:
        # A key in the header is checked before the body is read (and names the source of a
        # malformed body's quarantine); otherwise the key is the body's writeKey.
        if has_credentials(environ):
            source = source_authenticate(environ)
            ratelimit.hit(ratelimit.INGEST, str(source.id))
        limit = settings.INGEST_MAX_BATCH_BYTES if call_type is None else settings.INGEST_MAX_MESSAGE_BYTES
        payload = _decode(read_body(environ, limit=limit), source, received_at)
        if source is None:
            source = source_authenticate(environ, payload=_with_query_key(environ, payload))
            ratelimit.hit(ratelimit.INGEST, str(source.id))
        origin_check(source, environ.get("HTTP_ORIGIN"))
        structlog.contextvars.bind_contextvars(source=source.name)
        if call_type is None:
            return _batch_answer(_batch_ingest(source, payload, received_at))
        result = event_ingest(
            source=source, raw_messages=[payload], call_type=call_type, received_at=received_at, check_size=False
        )
        return _single_answer(result)
    except ApplicationError as error:
        # Refused whole (auth, limits, body); messages refused one by one are counted as
        # quarantined by event_ingest.
        metrics.EVENTS_REJECTED.labels(source=source.name if source else "unknown", reason=error.code).inc()
        raise
    finally:
        metrics.INGEST_LATENCY.labels(endpoint=call_type or "batch").observe(time.perf_counter() - started)


def _with_query_key(environ: Mapping[str, Any], payload: dict[str, Any]) -> Mapping[str, Any]:
    """RudderStack's beacon transport sends no headers and puts the write key in the query string."""
    if payload.get("writeKey") or "writeKey" not in environ.get("QUERY_STRING", ""):
        return payload
    return {"writeKey": (parse_qs(environ["QUERY_STRING"]).get("writeKey") or [""])[0]}


def _single_answer(result: IngestResult) -> tuple[int, dict[str, Any]]:
    if result.rejected:
        rejection = result.rejected[0]
        return 400, {"detail": rejection.detail, "code": rejection.code}
    return 200, {
        "success": True,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "suppressed": result.suppressed,
    }


def _batch_ingest(source: SourceInfo, payload: dict[str, Any], received_at: Any) -> IngestResult:
    messages = payload.get("batch")
    if messages is None:
        raise BadRequest('batch is missing: send the messages as a list under "batch"', code="invalid_batch")
    if not isinstance(messages, list):
        raise BadRequest(f"batch must be a list of messages, not {json_type(messages)}", code="invalid_batch")
    if len(messages) > settings.INGEST_MAX_BATCH_MESSAGES:
        raise BadRequest(
            f"batch has {len(messages)} messages; the limit is {settings.INGEST_MAX_BATCH_MESSAGES}",
            code="batch_too_many_messages",
        )
    defaults = {key: payload[key] for key in ("context", "integrations", "sentAt") if key in payload}
    try:
        # Once for the batch: these are merged into every message.
        check_values(defaults)
    except MessageError as error:
        message_quarantine(
            source=source,
            raw=None,
            raw_text=json_text(payload),
            code=error.code,
            detail=f"batch-level {error.detail}",
            received_at=received_at,
        )
        raise BadRequest(f"batch-level {error.detail}", code=error.code) from None
    return event_ingest(
        source=source, raw_messages=messages, call_type=None, received_at=received_at, defaults=defaults
    )


def _batch_answer(result: IngestResult) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "success": True,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "suppressed": result.suppressed,
        "rejected": len(result.rejected),
        "errors": [{"index": r.index, "code": r.code, "detail": r.detail} for r in result.rejected],
    }
    if result.rejected and not (result.accepted or result.duplicates or result.suppressed):
        body["success"] = False
        body["detail"] = f"all {len(result.rejected)} messages were rejected and quarantined"
        body["code"] = "all_rejected"
        return 400, body
    return 200, body


class _IngestView(SourceFacingApi):
    # Write-key auth and the per-source rate limit are applied by ingest_call, after the body is
    # known, because clients may put the write key in the body.
    call_type: ClassVar[str | None] = None

    def post(self, request: Request) -> HttpResponse:
        status, body = ingest_call(request.META, self.call_type)
        return _json_response(body, status)


def _single_call_view(call_type: str) -> type[_IngestView]:
    summary = f"Segment-compatible `{call_type}` call"
    request_shape = inline_serializer(f"{call_type.capitalize()}Message", _message_fields(_MESSAGE_SHAPES[call_type]))

    @extend_schema(
        operation_id=f"ingest_{call_type}",
        summary=summary,
        tags=["ingestion"],
        auth=[{"writeKey": []}],  # type: ignore[list-item] # spectacular takes requirement objects
        request=request_shape,
        responses={200: _ACCEPTED, **_ERROR_RESPONSES},
    )
    def post(self: _IngestView, request: Request) -> HttpResponse:
        return _IngestView.post(self, request)

    return type(f"{call_type.capitalize()}View", (_IngestView,), {"call_type": call_type, "post": post})


IdentifyView = _single_call_view("identify")
TrackView = _single_call_view("track")
PageView = _single_call_view("page")
ScreenView = _single_call_view("screen")
GroupView = _single_call_view("group")
AliasView = _single_call_view("alias")


class BatchView(_IngestView):
    call_type = None

    @extend_schema(
        operation_id="ingest_batch",
        summary="A batch of calls (also served at /v1/import)",
        description=(
            "Up to 2,500 messages and 500 KB (decompressed). Each message names its `type`. Valid "
            "messages are stored even when others are not: each invalid one is quarantined and listed "
            "in `errors`. Batch-level `context`, `integrations` and `sentAt` apply to every message."
        ),
        tags=["ingestion"],
        auth=[{"writeKey": []}],  # type: ignore[list-item] # spectacular takes requirement objects
        request=inline_serializer(
            "Batch",
            {
                "batch": serializers.ListField(child=serializers.DictField()),
                "context": serializers.DictField(required=False),
                "integrations": serializers.DictField(required=False),
                "sentAt": serializers.DateTimeField(required=False),
                "writeKey": serializers.CharField(required=False),
            },
        ),
        responses={200: _ACCEPTED, **_ERROR_RESPONSES},
        examples=[
            OpenApiExample(
                "Two calls",
                value={
                    "batch": [
                        {"type": "page", "anonymousId": "a-1", "name": "Pricing", "messageId": "m-1"},
                        {
                            "type": "identify",
                            "anonymousId": "a-1",
                            "userId": "u-1",
                            "traits": {"email": "ann@example.com"},
                        },
                    ]
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        return super().post(request)


_SHORT: dict[str, type[_IngestView]] = {
    "identify": IdentifyView,
    "track": TrackView,
    "page": PageView,
    "screen": ScreenView,
    "group": GroupView,
    "alias": AliasView,
}
# The views' paths under /v1/, and the view each one is (its call_type).
_VIEWS: dict[str, type[_IngestView]] = {
    "/v1/identify": IdentifyView,
    "/v1/track": TrackView,
    "/v1/page": PageView,
    "/v1/screen": ScreenView,
    "/v1/group": GroupView,
    "/v1/alias": AliasView,
    "/v1/batch": BatchView,
    "/v1/import": BatchView,
    # Where Segment's browser and mobile SDKs send (profiles/ingest_urls.py).
    **{f"/v1/{call[0]}": view for call, view in _SHORT.items()},
    "/v1/b": BatchView,
}


def _fast_match(environ: Environ) -> type[_IngestView] | None:
    view = _VIEWS.get(environ.get("PATH_INFO", ""))
    return view if view is not None and environ.get("REQUEST_METHOD") == "POST" else None


def _fast_answer(environ: Environ, view: Any) -> Answer:
    status, body = ingest_call(environ, view.call_type)
    return Answer(status, [("Content-Type", "application/json")], orjson.dumps(body))


# Every ingestion view allows POST alone, so any of them gives DRF's finalisation headers.
def _cors(environ: Environ) -> list[tuple[str, str]]:
    # The views are wrapped in profiles.browser.cors: the same headers, per Origin.
    return list(cors_headers(environ.get("HTTP_ORIGIN")))


FAST_ROUTE = Route(match=_fast_match, answer=_fast_answer, view=BatchView, wrapped=_cors)
