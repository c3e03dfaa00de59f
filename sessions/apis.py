"""The sessions API for channels (/v1/sessions...), authenticated with a source's write key.

Thin: authenticate, read the body within its limit, call a service or selector, answer with
the session and its version as ETag. Bodies are decoded here (not by DRF's parsers) so that
PATCH takes application/merge-patch+json and every body is capped before it is read.
"""

from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

from config.core.body import read_body
from config.core.errors import BadRequest, NotFound, PreconditionRequired, UnsupportedMediaType
from config.core.views import SourceFacingApi
from sessions import selectors, services
from sessions.auth import source_for
from sessions.concurrency import PreconditionError, etag, matches_none, parse_if_match
from sessions.documents import Outcome, SessionDoc

JSON_TYPES = ("application/json", "application/merge-patch+json")


# --- I/O helpers ------------------------------------------------------------------------------


def read_json(request: HttpRequest, *, empty: Any = None) -> Any:
    """The decoded JSON body, refused with 413 past SESSIONS_MAX_BODY_BYTES; `empty` when the
    body is empty (None: a body is required)."""
    return decode_body(request.META, empty=empty)


def decode_body(meta: Mapping[str, Any], *, empty: Any = None) -> Any:
    """read_json on a WSGI environ (config.core.body reads it within the limit)."""
    raw = read_body(meta, limit=settings.SESSIONS_MAX_BODY_BYTES)
    if not raw.strip():
        if empty is None:
            raise BadRequest("a JSON body is required", code="invalid_body")
        return empty
    content_type = meta.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type and content_type not in JSON_TYPES:
        raise UnsupportedMediaType(f"send {' or '.join(JSON_TYPES)}, not {content_type}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}", code="malformed_json") from None


def validated(serializer_class: type[serializers.Serializer], payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object", code="invalid_body")
    serializer = serializer_class(data=payload)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def session_response(doc: SessionDoc, *, status: int = 200, extra: dict[str, Any] | None = None) -> HttpResponse:
    body = session_body(doc) if extra is None else orjson.dumps({**doc.public(), **extra})
    response = HttpResponse(body, status=status, content_type="application/json")
    response["ETag"] = etag(doc.version)
    response["Cache-Control"] = "no-store"
    return response


def json_response(body: Any, status: int = 200) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


def if_match(meta: Mapping[str, Any], *, required: bool) -> Any:
    try:
        expected = parse_if_match(meta.get("HTTP_IF_MATCH"))
    except PreconditionError as error:
        raise BadRequest(str(error), code="invalid_if_match") from None
    if expected is None and required:
        raise PreconditionRequired(
            "send If-Match with the ETag you read (or '*' to overwrite whatever version is there)",
            code="if_match_required",
        )
    return expected


# --- the two hot operations, shared with the WSGI fast path (fast_path.py) -------------------


def session_read(meta: Mapping[str, Any], session_id: str) -> tuple[SessionDoc, bool]:
    """GET: the session, and whether If-None-Match names its version (answer 304)."""
    source = source_for(meta)
    doc = selectors.session_for_source(source=source, session_id=session_id)
    return doc, matches_none(meta.get("HTTP_IF_NONE_MATCH"), doc.version)


def session_write(meta: Mapping[str, Any], session_id: str) -> SessionDoc:
    """PATCH: the merge patch in the body applied if If-Match still holds."""
    source = source_for(meta)
    expected = if_match(meta, required=True)
    patch = decode_body(meta)
    return services.session_patch(
        source=source, session_id=session_id, patch=patch, expected=expected, now=timezone.now()
    )


def session_body(doc: SessionDoc) -> bytes:
    return orjson.dumps(doc.public())


# --- schema shapes ------------------------------------------------------------------------


class SessionOutput(serializers.Serializer):
    id = serializers.UUIDField()
    channel = serializers.CharField(help_text="The channel the session is on now.")
    startedChannel = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField(), help_text="Every channel it has been on.")
    device = serializers.CharField()
    version = serializers.IntegerField(help_text="Bumped by every write; also the ETag.")
    active = serializers.BooleanField()
    state = serializers.DictField(help_text="The session's JSON document.")
    startedAt = serializers.DateTimeField()
    lastSeenAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    endReason = serializers.ChoiceField(choices=["ended", "inactive", "superseded"], allow_null=True)
    outcome = serializers.ChoiceField(choices=list(Outcome.CHOICES), allow_null=True)


class StartInput(serializers.Serializer):
    userId = serializers.CharField(required=False, allow_blank=True, max_length=512)
    anonymousId = serializers.CharField(required=False, allow_blank=True, max_length=512)
    device = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    state = serializers.JSONField(required=False, help_text="Initial state: a JSON object.")


class EndInput(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=list(Outcome.CHOICES), default=Outcome.COMPLETED)


class HandoffInput(serializers.Serializer):
    ttlSeconds = serializers.IntegerField(required=False, min_value=1, help_text="Default 600, at most 3600.")


class HandoffOutput(serializers.Serializer):
    token = serializers.CharField(help_text="Single use; shown only in this response.")
    expiresAt = serializers.DateTimeField()
    resumeUrl = serializers.CharField(help_text="For a QR code, an SMS or an email link.")


class ResumeInput(serializers.Serializer):
    token = serializers.CharField(required=False, max_length=services.MAX_TOKEN_LENGTH)
    userId = serializers.CharField(required=False, max_length=512)
    anonymousId = serializers.CharField(required=False, max_length=512)
    sessionId = serializers.UUIDField(required=False, help_text="With an identity: which session to resume.")
    device = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


ERROR = inline_serializer("SessionError", {"detail": serializers.CharField(), "code": serializers.CharField()})
STALE = inline_serializer(
    "SessionVersionMismatch",
    {"detail": serializers.CharField(), "code": serializers.CharField(), "currentVersion": serializers.IntegerField()},
)
COMMON_ERRORS = {
    400: OpenApiResponse(ERROR, description="Malformed JSON or an invalid field."),
    401: OpenApiResponse(ERROR, description="No or unknown write key."),
    403: OpenApiResponse(ERROR, description="The source is disabled."),
    404: OpenApiResponse(ERROR, description="No such session, or not one this source may see."),
    413: OpenApiResponse(ERROR, description="Body or resulting state over the size limit."),
    429: OpenApiResponse(ERROR, description="Over the source's rate limit; see Retry-After."),
}
ETAG_HEADER = OpenApiParameter("ETag", OpenApiTypes.STR, OpenApiParameter.HEADER, response=True)
AUTH: Any = [{"writeKey": []}]


# --- views --------------------------------------------------------------------------------


class SessionStartApi(SourceFacingApi):
    @extend_schema(
        operation_id="sessions_start",
        summary="Start a session on the source's channel",
        description=(
            "For a userId or anonymousId. If the customer already has an active session on this channel "
            "that the source may see, that session is returned (200) unchanged; otherwise a new one is "
            "started (201) and a `Session Started` event is ingested."
        ),
        tags=["sessions"],
        auth=AUTH,
        request=StartInput,
        responses={201: SessionOutput, 200: SessionOutput, **COMMON_ERRORS},
    )
    def post(self, request: Request) -> HttpResponse:
        http: HttpRequest = request._request
        source = source_for(http.META)
        data = validated(StartInput, read_json(http))
        doc, created = services.session_start(
            source=source,
            user_id=data.get("userId"),
            anonymous_id=data.get("anonymousId"),
            device=data.get("device", ""),
            state=data.get("state"),
            now=timezone.now(),
        )
        response = session_response(doc, status=201 if created else 200)
        response["Location"] = f"/v1/sessions/{doc.id}"
        return response


class SessionApi(SourceFacingApi):
    """GET and PATCH are served by the WSGI fast path in production (fast_path.py), with these
    views' answers."""

    @extend_schema(
        operation_id="sessions_retrieve",
        summary="Read a session",
        description="One Redis round trip. Send If-None-Match with the ETag you hold to get 304 when unchanged.",
        tags=["sessions"],
        auth=AUTH,
        parameters=[ETAG_HEADER],
        responses={
            200: SessionOutput,
            304: OpenApiResponse(description="Unchanged since the ETag sent."),
            **COMMON_ERRORS,
        },
    )
    def get(self, request: Request, session_id: str) -> HttpResponse:
        doc, not_modified = session_read(request.META, str(session_id))
        if not_modified:
            response = HttpResponse(status=304)
            response["ETag"] = etag(doc.version)
            return response
        return session_response(doc)

    @extend_schema(
        operation_id="sessions_patch",
        summary="Update a session's state (JSON Merge Patch, RFC 7386)",
        description=(
            "The body is a merge patch of `state`: objects merge, `null` removes a key, anything else "
            "replaces. `If-Match` is required: the ETag you read, or `*` to write whatever the version. "
            "A stale ETag gets 412 with the current version and nothing is written."
        ),
        tags=["sessions"],
        auth=AUTH,
        parameters=[
            OpenApiParameter("If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
            ETAG_HEADER,
        ],
        request={"application/merge-patch+json": OpenApiTypes.OBJECT, "application/json": OpenApiTypes.OBJECT},
        responses={
            200: SessionOutput,
            409: OpenApiResponse(ERROR, description="The session has ended."),
            412: OpenApiResponse(STALE, description="Stale If-Match: the current version is in the body and ETag."),
            428: OpenApiResponse(ERROR, description="If-Match is missing."),
            **COMMON_ERRORS,
        },
    )
    def patch(self, request: Request, session_id: str) -> HttpResponse:
        return session_response(session_write(request.META, str(session_id)))


class SessionEndApi(SourceFacingApi):
    @extend_schema(
        operation_id="sessions_end",
        summary="End a session",
        description="Emits `Session Ended`. Ending an ended session changes nothing. If-Match is optional here.",
        tags=["sessions"],
        auth=AUTH,
        request=EndInput,
        responses={200: SessionOutput, 412: OpenApiResponse(STALE), **COMMON_ERRORS},
    )
    def post(self, request: Request, session_id: str) -> HttpResponse:
        http: HttpRequest = request._request
        source = source_for(http.META)
        expected = if_match(http.META, required=False)
        data = validated(EndInput, read_json(http, empty={}))
        doc = services.session_end(
            session_id=str(session_id),
            source=source,
            outcome=data["outcome"],
            now=timezone.now(),
            **({"expected": expected} if expected is not None else {}),
        )
        return session_response(doc)


class SessionHandoffApi(SourceFacingApi):
    @extend_schema(
        operation_id="sessions_handoff",
        summary="Hand a session off to another channel",
        description=(
            "Returns a short-lived, single-use resume token and a resume URL to put in a QR code, an SMS "
            "or an email link. The channel that receives it calls POST /v1/sessions/resume with the token."
        ),
        tags=["sessions"],
        auth=AUTH,
        request=HandoffInput,
        responses={
            201: HandoffOutput,
            409: OpenApiResponse(ERROR, description="The session has ended."),
            **COMMON_ERRORS,
        },
    )
    def post(self, request: Request, session_id: str) -> HttpResponse:
        http: HttpRequest = request._request
        source = source_for(http.META)
        data = validated(HandoffInput, read_json(http, empty={}))
        secret, token = services.session_handoff(
            source=source, session_id=str(session_id), ttl_seconds=data.get("ttlSeconds"), now=timezone.now()
        )
        return json_response(
            {
                "token": secret,
                "expiresAt": token.expires_at.isoformat().replace("+00:00", "Z"),
                "resumeUrl": _resume_url(http, secret),
            },
            status=201,
        )


def _resume_url(request: HttpRequest, token: str) -> str:
    template = settings.SESSIONS_RESUME_URL
    if template:
        return template.replace("{token}", token)
    return request.build_absolute_uri("/v1/sessions/resume") + f"?token={token}"


class SessionResumeApi(SourceFacingApi):
    @extend_schema(
        operation_id="sessions_resume",
        summary="Resume a session on this channel",
        description=(
            "With a resume `token` from a handoff, or with a `userId`/`anonymousId` this source has itself "
            "identified (the customer's most recent resumable session on another channel, or `sessionId`). "
            "Moves the session to this source's channel and device, returns its state, and ingests a "
            "`Session Resumed` event. A session that ended only for inactivity reopens."
        ),
        tags=["sessions"],
        auth=AUTH,
        request=ResumeInput,
        responses={
            200: SessionOutput,
            404: OpenApiResponse(ERROR, description="Unknown token, or no resumable session for the identity."),
            410: OpenApiResponse(ERROR, description="Token used, expired or revoked, or the session has ended."),
            **{k: v for k, v in COMMON_ERRORS.items() if k != 404},
        },
    )
    def post(self, request: Request) -> HttpResponse:
        http: HttpRequest = request._request
        source = source_for(http.META)
        data = validated(ResumeInput, read_json(http))
        now = timezone.now()
        given = [k for k in ("token", "userId", "anonymousId") if data.get(k)]
        if len(given) != 1:
            raise BadRequest("send exactly one of token, userId, anonymousId", code="invalid_resume")
        if data.get("token"):
            doc = services.session_resume_by_token(source=source, token=data["token"], device=data["device"], now=now)
            via = "token"
        else:
            kind = "user_id" if data.get("userId") else "anonymous_id"
            session_id = data.get("sessionId")
            doc = services.session_resume_by_identity(
                source=source,
                kind=kind,
                value=data.get("userId") or data.get("anonymousId"),
                session_id=str(session_id) if session_id else None,
                device=data["device"],
                now=now,
            )
            via = "identity"
        return session_response(doc, extra={"resumedVia": via})


class CustomerSessionsApi(SourceFacingApi):
    @extend_schema(
        operation_id="sessions_customer_list",
        summary="A customer's sessions, for a channel that knows who the customer is",
        description=(
            "Exactly one of user_id, anonymous_id: an identity this source has itself identified. "
            "Newest first, at most 50."
        ),
        tags=["sessions"],
        auth=AUTH,
        parameters=[
            OpenApiParameter("user_id", OpenApiTypes.STR, required=False),
            OpenApiParameter("anonymous_id", OpenApiTypes.STR, required=False),
            OpenApiParameter("active", OpenApiTypes.BOOL, required=False, description="Only active sessions."),
        ],
        responses={200: inline_serializer("CustomerSessions", {"sessions": SessionOutput(many=True)}), **COMMON_ERRORS},
    )
    def get(self, request: Request) -> HttpResponse:
        http: HttpRequest = request._request
        source = source_for(http.META)
        params = http.GET
        given = [(k, params[k]) for k in ("user_id", "anonymous_id") if params.get(k)]
        if len(given) != 1:
            raise BadRequest("give exactly one of user_id, anonymous_id", code="invalid_lookup")
        active = params.get("active", "false").lower()
        if active not in ("true", "false", "1", "0"):
            raise BadRequest("active must be true or false", code="invalid_lookup")
        kind, value = given[0]
        if "\x00" in value or len(value) > 512:
            raise BadRequest(f"{kind} must be at most 512 characters, without NUL", code="invalid_lookup")
        customer_id = selectors.source_identity_customer(source_id=source.id, kind=kind, value=value)
        if customer_id is None:
            raise NotFound("no customer this source has identified by that identity", code="customer_not_found")
        docs = selectors.customer_sessions(customer_id=customer_id, active=active in ("true", "1"))
        return json_response({"sessions": [d.public() for d in docs]})
