"""The Segment-compatible tracking API: /v1/identify, track, page, screen, group, alias, batch, import,
and the paths the browser and mobile SDKs use for them (/v1/t, ..., /v1/b: profiles/ingest_urls.py).

Thin by design: authenticate the source, read the body within the limits, hand the messages to
`event_ingest`, answer. The body is read and decoded here (not by DRF's parsers) so gzip can be
inflated under a hard cap and JSON decoded once.
"""

import time
import zlib
from typing import Any, ClassVar

import orjson
import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

from config.core import metrics
from config.core.errors import ApplicationError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from config.core.views import SourceFacingApi
from profiles.browser import origin_check
from profiles.contracts import SourceInfo
from profiles.ingest import IngestResult, event_ingest, message_quarantine
from profiles.writekey import source_authenticate, write_key_from_header


def _json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """The decompressed body, refused with 413 once it exceeds `limit` (a gzip bomb is never
    inflated beyond limit + 1 bytes)."""
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    compressed = encoding not in ("identity", "")
    wire_limit = max(limit, settings.INGEST_MAX_WIRE_BYTES) if compressed else limit
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("invalid Content-Length") from None
    if declared > wire_limit:
        raise PayloadTooLarge(f"body is over the {wire_limit // 1024} KB limit", code="body_too_large")
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # analytics-kotlin streams its body chunked, with no Content-Length; Django reads such a
        # body as empty, so read what the server de-chunked, under the same cap.
        raw = request.META["wsgi.input"].read(wire_limit + 1)
    else:
        raw = request.read(wire_limit + 1)
    if len(raw) > wire_limit:
        raise PayloadTooLarge(f"body is over the {wire_limit // 1024} KB limit", code="body_too_large")
    if not compressed:
        body = raw
    elif encoding in ("gzip", "deflate", "x-gzip"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise BadRequest(f"body is not valid {encoding}", code="invalid_encoding") from None
        if len(body) <= limit and not inflater.eof and not inflater.unconsumed_tail:
            raise BadRequest(f"body is a truncated {encoding} stream", code="invalid_encoding")
    else:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    if len(body) > limit:
        raise PayloadTooLarge(f"decompressed body is over the {limit // 1024} KB limit", code="body_too_large")
    return body


def _decode(body: bytes, source: SourceInfo | None, received_at: Any) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
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
        raise BadRequest("body must be a JSON object", code="invalid_body")
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
    400: OpenApiResponse(_ERROR, description="Malformed JSON, not an object, missing identity, or an invalid field."),
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


class _IngestView(SourceFacingApi):
    # Write-key auth and the per-source rate limit are applied in post(), after the body is
    # known, because clients may put the write key in the body.
    fast_methods = frozenset({"POST"})
    call_type: ClassVar[str | None] = None

    def fast_post(self, http: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.handle_post(http)

    def post(self, request: Request) -> HttpResponse:
        return self.handle_post(request._request)

    def handle_post(self, http: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        received_at = timezone.now()
        source: SourceInfo | None = None
        try:
            header_key = write_key_from_header(http)
            source = source_authenticate(header_key) if header_key is not None else None
            limit = settings.INGEST_MAX_BATCH_BYTES if self.call_type is None else settings.INGEST_MAX_MESSAGE_BYTES
            body = _read_body(http, limit)
            payload = _decode(body, source, received_at)
            if source is None:
                # RudderStack's beacon transport puts it in the query string (a beacon sends no headers).
                source = source_authenticate(payload.get("writeKey") or http.GET.get("writeKey"))
            origin_check(source, http.META.get("HTTP_ORIGIN"))
            structlog.contextvars.bind_contextvars(source=source.name)
            result = self.ingest(source, payload, received_at)
            return self.respond(result)
        except ApplicationError as error:
            # Refused whole (auth, limits, body); messages refused one by one are counted as
            # quarantined by event_ingest.
            metrics.EVENTS_REJECTED.labels(source=source.name if source else "unknown", reason=error.code).inc()
            raise
        finally:
            metrics.INGEST_LATENCY.labels(endpoint=self.call_type or "batch").observe(time.perf_counter() - started)

    def ingest(self, source: SourceInfo, payload: dict[str, Any], received_at: Any) -> IngestResult:
        return event_ingest(
            source=source, raw_messages=[payload], call_type=self.call_type, received_at=received_at, check_size=False
        )

    def respond(self, result: IngestResult) -> HttpResponse:
        if result.rejected:
            rejection = result.rejected[0]
            return _json_response({"detail": rejection.detail, "code": rejection.code}, status=400)
        return _json_response(
            {
                "success": True,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "suppressed": result.suppressed,
            }
        )


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

    def ingest(self, source: SourceInfo, payload: dict[str, Any], received_at: Any) -> IngestResult:
        messages = payload.get("batch")
        if not isinstance(messages, list):
            raise BadRequest("batch must be a list of messages", code="invalid_batch")
        if len(messages) > settings.INGEST_MAX_BATCH_MESSAGES:
            raise BadRequest(
                f"batch has {len(messages)} messages; the limit is {settings.INGEST_MAX_BATCH_MESSAGES}",
                code="batch_too_many_messages",
            )
        defaults = {key: payload[key] for key in ("context", "integrations", "sentAt") if key in payload}
        return event_ingest(
            source=source, raw_messages=messages, call_type=None, received_at=received_at, defaults=defaults
        )

    def respond(self, result: IngestResult) -> HttpResponse:
        body = {
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
            return _json_response(body, status=400)
        return _json_response(body)
