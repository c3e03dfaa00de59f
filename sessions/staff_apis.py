"""The management API over sessions (/api/v1/sessions...), for staff with an API token."""

from datetime import timedelta
from uuid import UUID

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core.errors import BadRequest, NotFound
from sessions import selectors, services
from sessions.apis import EndInput, SessionOutput
from sessions.models import ResumeToken


class StaffSessionOutput(SessionOutput):
    customerId = serializers.UUIDField()
    sourceIds = serializers.ListField(child=serializers.UUIDField())
    endedChannel = serializers.CharField(allow_null=True)
    userId = serializers.CharField(allow_null=True)
    anonymousId = serializers.CharField(allow_null=True)


class TokenOutput(serializers.ModelSerializer):
    session_id = serializers.UUIDField()
    issued_by_id = serializers.UUIDField(allow_null=True)
    used_by_id = serializers.UUIDField(allow_null=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = ResumeToken
        fields = (
            "id",
            "session_id",
            "prefix",
            "issued_by_id",
            "created_at",
            "expires_at",
            "used_at",
            "used_by_id",
            "revoked_at",
            "status",
        )

    def get_status(self, token: ResumeToken) -> str:
        if token.revoked_at:
            return "revoked"
        if token.used_at:
            return "used"
        return "expired" if token.expires_at <= timezone.now() else "valid"


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class StaffSessionListApi(APIView):
    @extend_schema(
        operation_id="staff_sessions_list",
        summary="Sessions, most recently active first",
        parameters=[
            OpenApiParameter("customer_id", OpenApiTypes.UUID, required=False),
            OpenApiParameter("active", OpenApiTypes.BOOL, required=False),
            OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="At most 500; default 50."),
        ],
        responses={200: inline_serializer("StaffSessions", {"sessions": StaffSessionOutput(many=True)})},
        tags=["sessions (staff)"],
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            customer_id = UUID(params["customer_id"]) if params.get("customer_id") else None
            limit = int(params.get("limit", 50))
        except ValueError:
            raise BadRequest("customer_id must be a UUID and limit an integer", code="invalid_query") from None
        if not 1 <= limit <= 500:
            raise BadRequest("limit must be between 1 and 500", code="invalid_query")
        active_param = params.get("active")
        active = None if active_param is None else active_param.lower() in ("true", "1")
        docs = selectors.session_list(customer_id=customer_id, active=active, limit=limit)
        return Response({"sessions": [d.staff() for d in docs]})


class StaffSessionApi(APIView):
    @extend_schema(
        operation_id="staff_sessions_retrieve", responses={200: StaffSessionOutput}, tags=["sessions (staff)"]
    )
    def get(self, request: Request, session_id: UUID) -> Response:
        doc = selectors.session_get(session_id=str(session_id))
        if doc is None:
            raise NotFound("no such session", code="session_not_found")
        return Response(doc.staff())


class StaffSessionEndApi(APIView):
    @extend_schema(
        operation_id="staff_sessions_end",
        summary="End a session (emits Session Ended)",
        request=EndInput,
        responses={200: StaffSessionOutput},
        tags=["sessions (staff)"],
    )
    def post(self, request: Request, session_id: UUID) -> Response:
        data = EndInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        doc = services.session_end(
            session_id=str(session_id), source=None, outcome=data.validated_data["outcome"], now=timezone.now()
        )
        return Response(doc.staff())


class StaffSessionTokensApi(APIView):
    @extend_schema(
        operation_id="staff_sessions_tokens_list",
        summary="A session's resume tokens (never the tokens themselves)",
        responses={200: TokenOutput(many=True)},
        tags=["sessions (staff)"],
    )
    def get(self, request: Request, session_id: UUID) -> Response:
        tokens = ResumeToken.objects.filter(session_id=session_id).order_by("-created_at")[:200]
        return Response(TokenOutput(tokens, many=True).data)


class StaffSessionTokensRevokeApi(APIView):
    @extend_schema(
        operation_id="staff_sessions_tokens_revoke",
        summary="Revoke every outstanding resume token of a session",
        request=None,
        responses={200: inline_serializer("TokensRevoked", {"revoked": serializers.IntegerField()})},
        tags=["sessions (staff)"],
    )
    def post(self, request: Request, session_id: UUID) -> Response:
        if selectors.session_get(session_id=str(session_id)) is None:
            raise NotFound("no such session", code="session_not_found")
        return Response({"revoked": services.session_tokens_revoke(session_id=str(session_id), now=timezone.now())})


class StaffTokenRevokeApi(APIView):
    @extend_schema(
        operation_id="staff_session_tokens_revoke_one",
        summary="Revoke one resume token",
        request=None,
        responses={200: TokenOutput},
        tags=["sessions (staff)"],
    )
    def post(self, request: Request, token_id: UUID) -> Response:
        token = services.resume_token_revoke(token_id=token_id, now=timezone.now())
        return Response(TokenOutput(token).data)


KPI_OUTPUT = inline_serializer(
    "SessionKpis",
    {
        "since": serializers.DateTimeField(),
        "until": serializers.DateTimeField(),
        "contextRetention": inline_serializer(
            "ContextRetention",
            {
                "rate": serializers.FloatField(allow_null=True, help_text="resumed / (resumed + startedOver)"),
                "resumed": serializers.IntegerField(),
                "startedOver": serializers.IntegerField(),
            },
        ),
        "crossChannelCompletion": inline_serializer(
            "CrossChannelCompletion",
            {
                "rate": serializers.FloatField(allow_null=True, help_text="completedElsewhere / continued"),
                "continued": serializers.IntegerField(help_text="Sessions begun in the period and resumed elsewhere."),
                "completedElsewhere": serializers.IntegerField(
                    help_text="Of those, completed on a channel other than the one they began on."
                ),
            },
        ),
    },
)


class StaffSessionKpisApi(APIView):
    @extend_schema(
        operation_id="staff_sessions_kpis",
        summary="Context retention and cross-channel completion rate",
        parameters=[OpenApiParameter("days", OpenApiTypes.INT, required=False, description="1 to 365; default 30.")],
        responses={200: KPI_OUTPUT},
        tags=["sessions (staff)"],
    )
    def get(self, request: Request) -> Response:
        try:
            days = int(request.query_params.get("days", 30))
        except ValueError:
            raise BadRequest("days must be an integer", code="invalid_query") from None
        if not 1 <= days <= 365:
            raise BadRequest("days must be between 1 and 365", code="invalid_query")
        until = timezone.now()
        kpis = selectors.session_kpis(since=until - timedelta(days=days), until=until)
        return Response(kpis_body(kpis))


def kpis_body(kpis: selectors.Kpis) -> dict[str, object]:
    return {
        "since": kpis.since,
        "until": kpis.until,
        "contextRetention": {
            "rate": _rate(kpis.context_retention),
            "resumed": kpis.resumed,
            "startedOver": kpis.started_over,
        },
        "crossChannelCompletion": {
            "rate": _rate(kpis.cross_channel_completion),
            "continued": kpis.continued,
            "completedElsewhere": kpis.completed_elsewhere,
        },
    }
