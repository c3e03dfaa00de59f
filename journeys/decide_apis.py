"""POST /v1/decide (write-key auth, as the /v1 tracking calls) and GET /api/v1/decisions/{id}.

Thin: authenticate, count the source's rate limit, read the body within its limit
(config.core.body), check its shape, call `decision_make`, answer. `decide` works on the WSGI
environ, so the view and the WSGI fast path (FAST_ROUTE, config/core/fast_path.py: how production
serves it) run the same code and give the same answer.
"""

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core import ratelimit
from config.core.body import read_json
from config.core.errors import BadRequest, NotFound
from config.core.fast_path import Answer, Environ, Route
from config.core.views import SourceFacingApi
from journeys.decide import DecisionResult, UnknownPlacement, decision_get, decision_make
from journeys.decide_lookup import Identity
from profiles.contracts import SourceInfo
from profiles.facade import json_unstorable, source_authenticate

_MAX_ID = 512
_MAX_NAME = 100


def _string(payload: dict[str, Any], name: str, *, limit: int, required: bool = False) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required", code=f"missing_{name}")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and name in ("userId", "anonymousId"):
        value = str(value)  # Segment's clients accept numeric ids
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{name} must be a string of at most {limit} characters", code=f"invalid_{name}")
    return value


def decide(environ: Mapping[str, Any]) -> DecisionResult:
    """POST /v1/decide on the request's WSGI environ: the view's work, and the fast path's."""
    payload = read_json(environ, limit=settings.INGEST_MAX_MESSAGE_BYTES)
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object", code="invalid_body")
    degraded_reason: str | None = None
    source: SourceInfo | None = None
    try:
        source = source_authenticate(environ, payload=payload)
    except DatabaseError:
        # The key cannot be checked; the answer is the default experience, which is public.
        degraded_reason = "database_unavailable"
    else:
        try:
            ratelimit.hit(ratelimit.DECIDE, str(source.id))
        except ratelimit.RedisUnavailable:
            degraded_reason = "redis_unavailable"
    user_id = _string(payload, "userId", limit=_MAX_ID)
    anonymous_id = _string(payload, "anonymousId", limit=_MAX_ID)
    if user_id is None and anonymous_id is None:
        raise BadRequest("userId or anonymousId is required", code="missing_identity")
    placement = _string(payload, "placement", limit=_MAX_NAME, required=True)
    channel = _string(payload, "channel", limit=_MAX_NAME) or (source.channel if source else "")
    context = payload.get("context") or {}
    if not isinstance(context, dict):
        raise BadRequest("context must be a JSON object", code="invalid_context")
    # The decision is kept (write-behind) with what was asked: refuse now what PostgreSQL could
    # not keep then, rather than answer 200 and lose the record.
    refused = json_unstorable({"placement": placement, "channel": channel, "context": context})
    if refused is not None:
        raise BadRequest(refused[1], code=refused[0])
    try:
        return decision_make(
            source_id=source.id if source else None,
            placement=placement or "",
            identity=Identity(user_id=user_id, anonymous_id=anonymous_id),
            channel=channel,
            context=context,
            degraded_reason=degraded_reason,
        )
    except UnknownPlacement:
        raise NotFound(
            f"no decide journey is published for placement {placement!r}", code="unknown_placement"
        ) from None


def _json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


_ERROR = inline_serializer("DecideError", {"detail": serializers.CharField(), "code": serializers.CharField()})


DECIDE_INPUT = inline_serializer(
    "DecideRequest",
    {
        "userId": serializers.CharField(required=False, help_text="userId or anonymousId is required."),
        "anonymousId": serializers.CharField(required=False),
        "placement": serializers.SlugField(
            max_length=_MAX_NAME, help_text="Where the answer is used, e.g. support_entry."
        ),
        "channel": serializers.CharField(
            required=False, help_text="The channel asking; default: the source's channel."
        ),
        "context": serializers.DictField(
            required=False, help_text="Anything about the request; conditions read it as event.properties.*"
        ),
        "writeKey": serializers.CharField(required=False, help_text="Alternative to Basic auth."),
    },
)


class DecideOutput(serializers.Serializer):
    decision_id = serializers.UUIDField(help_text="GET /api/v1/decisions/{id} explains it.")
    placement = serializers.CharField()
    route = serializers.CharField(allow_null=True, help_text="e.g. premium_support or self_service.")
    content = serializers.DictField()
    journey = serializers.CharField(allow_null=True, help_text="The key of the journey that answered.")
    version = serializers.IntegerField(allow_null=True)
    degraded = serializers.BooleanField(help_text="True: the journey's default_decision, given because of `reason`.")
    reason = serializers.ChoiceField(
        choices=["redis_unavailable", "database_unavailable", "session_unavailable"],
        required=False,
        help_text="Only on degraded answers.",
    )


class DecideApi(SourceFacingApi):
    @extend_schema(
        operation_id="decide",
        summary="Decide what this customer gets at a placement, now",
        description=(
            "Evaluates the journeys published for the placement (trigger type `decide`) over the "
            "customer's profile, computed traits, segments, consent and live session, and records the "
            "decision. When Redis or the database cannot be reached the answer is the journey's "
            "`default_decision` with `degraded: true` and a `reason`, never an error."
        ),
        tags=["decide"],
        auth=[{"writeKey": []}],  # type: ignore[list-item] # spectacular takes requirement objects
        request=DECIDE_INPUT,
        responses={
            200: DecideOutput,
            400: OpenApiResponse(_ERROR, description="Malformed JSON, no identity, or an invalid field."),
            401: OpenApiResponse(_ERROR, description="No or unknown write key."),
            403: OpenApiResponse(_ERROR, description="The source is disabled."),
            404: OpenApiResponse(_ERROR, description="No decide journey is published for this placement."),
            413: OpenApiResponse(_ERROR, description="Body over 32 KB (decompressed)."),
            415: OpenApiResponse(_ERROR, description="A Content-Encoding other than gzip or deflate."),
            429: OpenApiResponse(_ERROR, description="Over the source's rate limit; see Retry-After."),
        },
        examples=[
            OpenApiExample(
                "Support entry",
                value={"userId": "u-1", "channel": "web", "placement": "support_entry", "context": {"page": "/help"}},
                request_only=True,
            ),
            OpenApiExample(
                "A VIP customer",
                value={
                    "decision_id": "0b7c8a52-3f55-4f0e-9a43-7d2e8f1b6c11",
                    "placement": "support_entry",
                    "route": "premium_support",
                    "content": {"headline": "A specialist is ready for you"},
                    "journey": "vip-routing",
                    "version": 1,
                    "degraded": False,
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        return _json_response(decide(request.META).as_body())


# The headers of the view's answer before DRF's finalisation, as _json_response sets them.
_ANSWER_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))


def _fast_match(environ: Environ) -> bool | None:
    return True if environ.get("PATH_INFO") == "/v1/decide" and environ.get("REQUEST_METHOD") == "POST" else None


def _fast_answer(environ: Environ, matched: Any) -> Answer:
    return Answer(200, list(_ANSWER_HEADERS), orjson.dumps(decide(environ).as_body()))


FAST_ROUTE = Route(match=_fast_match, answer=_fast_answer, view=DecideApi)


class DecisionOutput(serializers.Serializer):
    id = serializers.UUIDField()
    placement = serializers.CharField()
    customer_id = serializers.UUIDField(allow_null=True)
    journey = serializers.CharField(allow_null=True, source="version.journey.key", default=None)
    version = serializers.IntegerField(allow_null=True, source="version.number", default=None)
    at = serializers.DateTimeField()
    degraded = serializers.BooleanField()
    result = serializers.DictField(help_text="route, content, journey and channel as answered.")
    explanation = serializers.DictField(
        help_text=(
            "Why: per journey tried, the steps walked, each branch's conditions with what every leaf "
            "saw and its result, and the branch chosen; the roots loaded; for a default answer, why."
        )
    )


class DecisionApi(APIView):
    @extend_schema(
        operation_id="decision_retrieve",
        summary="A decision of the decide API, and why it was made",
        tags=["decide"],
        parameters=[OpenApiParameter("decision_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: DecisionOutput, 404: OpenApiResponse(_ERROR, description="No such decision.")},
    )
    def get(self, request: Request, decision_id: UUID) -> Response:
        decision = decision_get(decision_id=decision_id)
        if decision is None:
            raise NotFound("no such decision", code="decision_not_found")
        return Response(DecisionOutput(decision).data)
