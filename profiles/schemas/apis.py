"""The management API of the schema registry and the quarantine. No logic here: services write,
selectors read, serializers shape."""

from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from profiles.models import EventSchema, EventSchemaVersion, QuarantinedMessage, SchemaEventType, SchemaPolicy, Source
from profiles.schemas import selectors, services
from profiles.schemas.compat import RULES
from profiles.schemas.quarantine import MAX_REPLAY, quarantine_replay
from profiles.schemas.schemaver import Bump

SCHEMAS_TAG = "schemas"
QUARANTINE_TAG = "quarantine"


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


class BreachOutput(serializers.Serializer):
    rule = serializers.ChoiceField(choices=RULES)
    path = serializers.CharField(help_text="JSON pointer into the document where the rule is broken.")
    detail = serializers.CharField()


class IncompatibleOutput(ErrorOutput):
    bump = serializers.CharField()
    active = serializers.CharField()
    breaking_changes = BreachOutput(many=True)


class ViolationOutput(serializers.Serializer):
    path = serializers.CharField(help_text="JSON pointer to the offending value; empty for the whole object.")
    keyword = serializers.CharField()
    message = serializers.CharField()


class SchemaOutput(serializers.Serializer):
    id = serializers.UUIDField()
    event_type = serializers.ChoiceField(choices=SchemaEventType.choices)
    event_name = serializers.CharField()
    source_id = serializers.UUIDField(allow_null=True)
    description = serializers.CharField()
    active_version = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_active_version(self, schema: EventSchema) -> str | None:
        active: dict[UUID, str] = self.context.get("active", {})
        return active.get(schema.id)


def _schemas_data(schemas: list[EventSchema]) -> Any:
    active = selectors.event_schema_active_versions(schema_ids=[schema.id for schema in schemas])
    return SchemaOutput(schemas, many=True, context={"active": active}).data


class SchemaCreateInput(serializers.Serializer):
    event_type = serializers.ChoiceField(choices=SchemaEventType.choices)
    event_name = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200, trim_whitespace=True
    )
    source_id = serializers.UUIDField(required=False, allow_null=True, default=None, help_text="Empty: every source.")
    description = serializers.CharField(required=False, allow_blank=True, default="")


class SchemaFilterInput(serializers.Serializer):
    event_type = serializers.ChoiceField(choices=SchemaEventType.choices, required=False)
    event_name = serializers.CharField(required=False, allow_blank=True)
    source_id = serializers.UUIDField(required=False)


class VersionOutput(serializers.ModelSerializer):
    schema_id = serializers.UUIDField()

    class Meta:
        model = EventSchemaVersion
        fields = (
            "schema_id",
            "version",
            "status",
            "document",
            "published_at",
            "deprecated_at",
            "created_at",
            "updated_at",
        )


class VersionCreateInput(serializers.Serializer):
    version = serializers.CharField(max_length=32, help_text="SchemaVer MODEL-REVISION-ADDITION, e.g. 1-0-0.")
    document = serializers.JSONField(help_text="A JSON Schema (Draft 2020-12) for the properties or traits.")


class VersionUpdateInput(serializers.Serializer):
    document = serializers.JSONField()


class PublishOutput(serializers.Serializer):
    version = VersionOutput()
    previous = serializers.CharField(allow_null=True, help_text="The version this one replaced, now deprecated.")
    bump = serializers.ChoiceField(choices=[b.value for b in Bump], allow_null=True)
    breaking_changes = BreachOutput(many=True, help_text="What a REVISION or MODEL bump breaks; empty otherwise.")


class ValidateInput(serializers.Serializer):
    message = serializers.JSONField(help_text="A Segment message, as sent to /v1/batch (with its type).")
    source_id = serializers.UUIDField(required=False, allow_null=True, default=None)


class ValidateOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    event_type = serializers.CharField()
    event_name = serializers.CharField()
    schema_id = serializers.UUIDField(allow_null=True)
    version = serializers.CharField(allow_null=True, help_text="The active version validated against, if any.")
    violations = ViolationOutput(many=True)


class SchemaPagination(CursorPagination):
    ordering = ("-created_at",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


_CURSOR_PARAMS = [
    OpenApiParameter("cursor", OpenApiTypes.STR, required=False),
    OpenApiParameter("page_size", OpenApiTypes.INT, required=False),
]


class SchemaListCreateApi(APIView):
    pagination_class = SchemaPagination

    @extend_schema(
        operation_id="schemas_list",
        summary="Event schemas, newest first",
        parameters=[SchemaFilterInput, *_CURSOR_PARAMS],
        responses={200: SchemaOutput(many=True), 400: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def get(self, request: Request) -> Response:
        filters = SchemaFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.event_schema_list(**filters.validated_data), request, view=self)
        return paginator.get_paginated_response(_schemas_data(list(page or [])))

    @extend_schema(
        operation_id="schemas_create",
        summary="Register the schema of a track event, identify traits, or page/screen properties",
        request=SchemaCreateInput,
        responses={201: SchemaOutput, 400: ErrorOutput, 404: ErrorOutput, 409: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def post(self, request: Request) -> Response:
        data = SchemaCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        schema = services.event_schema_create(**data.validated_data)
        return Response(_schemas_data([schema])[0], status=status.HTTP_201_CREATED)


class SchemaDetailApi(APIView):
    @extend_schema(operation_id="schemas_retrieve", responses={200: SchemaOutput, 404: ErrorOutput}, tags=[SCHEMAS_TAG])
    def get(self, request: Request, schema_id: UUID) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        return Response(_schemas_data([schema])[0])


class SchemaVersionsApi(APIView):
    @extend_schema(
        operation_id="schemas_versions_list",
        summary="Every version of a schema, newest first",
        responses={200: VersionOutput(many=True), 404: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def get(self, request: Request, schema_id: UUID) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        return Response(VersionOutput(selectors.event_schema_versions(schema=schema), many=True).data)

    @extend_schema(
        operation_id="schemas_versions_create",
        summary="Add a draft version",
        description="The document is checked as a Draft 2020-12 schema now, and again when published.",
        request=VersionCreateInput,
        responses={201: VersionOutput, 400: ErrorOutput, 404: ErrorOutput, 409: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def post(self, request: Request, schema_id: UUID) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        data = VersionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.event_schema_version_create(schema=schema, **data.validated_data)
        return Response(VersionOutput(row).data, status=status.HTTP_201_CREATED)


class SchemaVersionDetailApi(APIView):
    @extend_schema(
        operation_id="schemas_versions_retrieve",
        responses={200: VersionOutput, 404: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def get(self, request: Request, schema_id: UUID, version: str) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        return Response(VersionOutput(selectors.event_schema_version_get(schema=schema, version=version)).data)

    @extend_schema(
        operation_id="schemas_versions_update",
        summary="Replace a draft's document",
        request=VersionUpdateInput,
        responses={200: VersionOutput, 400: ErrorOutput, 404: ErrorOutput, 409: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def put(self, request: Request, schema_id: UUID, version: str) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        row = selectors.event_schema_version_get(schema=schema, version=version)
        data = VersionUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.event_schema_version_update(version=row, document=data.validated_data["document"])
        return Response(VersionOutput(row).data)


class SchemaVersionPublishApi(APIView):
    @extend_schema(
        operation_id="schemas_versions_publish",
        summary="Make a draft the active version",
        description="The version must come after every published one. An ADDITION (only the last number "
        "grows) must accept every message the active version accepts; when it does not, the answer is "
        "409 `incompatible_version` listing each broken rule and the JSON pointer where, and the draft "
        "must be published as a REVISION or MODEL bump instead. The replaced version is deprecated.",
        request=None,
        responses={200: PublishOutput, 400: ErrorOutput, 404: ErrorOutput, 409: IncompatibleOutput},
        tags=[SCHEMAS_TAG],
    )
    def post(self, request: Request, schema_id: UUID, version: str) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        row = selectors.event_schema_version_get(schema=schema, version=version)
        result = services.event_schema_version_publish(version=row)
        return Response(
            PublishOutput(
                {
                    "version": result.version,
                    "previous": result.previous.version if result.previous else None,
                    "bump": result.bump.value if result.bump else None,
                    "breaking_changes": [breach.as_dict() for breach in result.breaking_changes],
                }
            ).data
        )


class SchemaVersionDeprecateApi(APIView):
    @extend_schema(
        operation_id="schemas_versions_deprecate",
        summary="Retire the active version; the schema validates nothing until the next publish",
        request=None,
        responses={200: VersionOutput, 404: ErrorOutput, 409: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def post(self, request: Request, schema_id: UUID, version: str) -> Response:
        schema = selectors.event_schema_get(schema_id=schema_id)
        row = selectors.event_schema_version_get(schema=schema, version=version)
        return Response(VersionOutput(services.event_schema_version_deprecate(version=row)).data)


class SchemaValidateApi(APIView):
    @extend_schema(
        operation_id="schemas_validate",
        summary="Validate a sample message against the active version that would apply to it",
        description="Uses the schema ingestion would pick for the message (the source's own before the "
        "global one) whatever the source's policy. `valid` is true when no schema applies.",
        request=ValidateInput,
        responses={200: ValidateOutput, 400: ErrorOutput, 404: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def post(self, request: Request) -> Response:
        data = ValidateInput(data=request.data)
        data.is_valid(raise_exception=True)
        check = selectors.message_check(**data.validated_data)
        return Response(ValidateOutput(check).data)


# --- quarantine ----------------------------------------------------------------------------------


class QuarantineOutput(serializers.ModelSerializer):
    source_id = serializers.UUIDField(allow_null=True)
    event_id = serializers.IntegerField(allow_null=True, help_text="The event a replay stored it as.")
    status = serializers.SerializerMethodField()

    class Meta:
        model = QuarantinedMessage
        fields = (
            "id",
            "status",
            "source_id",
            "received_at",
            "stage",
            "reason",
            "detail",
            "message_id",
            "call_type",
            "raw",
            "raw_text",
            "defaults",
            "replay_count",
            "replayed_at",
            "resolved_at",
            "event_id",
        )

    @extend_schema_field(serializers.ChoiceField(choices=["open", "resolved"]))
    def get_status(self, row: QuarantinedMessage) -> str:
        return "open" if row.resolved_at is None else "resolved"


class QuarantineFilterInput(serializers.Serializer):
    source_id = serializers.UUIDField(required=False)
    reason = serializers.CharField(required=False, help_text="e.g. schema_violation, missing_identity")
    stage = serializers.CharField(required=False, help_text="ingest or schema")
    status = serializers.ChoiceField(choices=["open", "resolved", "all"], required=False, default="open")


class QuarantinePagination(CursorPagination):
    ordering = ("-id",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class QuarantineListApi(APIView):
    pagination_class = QuarantinePagination

    @extend_schema(
        operation_id="quarantine_list",
        summary="Messages that were received but not accepted, newest first",
        parameters=[QuarantineFilterInput, *_CURSOR_PARAMS],
        responses={200: QuarantineOutput(many=True), 400: ErrorOutput},
        tags=[QUARANTINE_TAG],
    )
    def get(self, request: Request) -> Response:
        filters = QuarantineFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.quarantine_list(**filters.validated_data), request, view=self)
        return paginator.get_paginated_response(QuarantineOutput(page, many=True).data)


class QuarantineDetailApi(APIView):
    @extend_schema(
        operation_id="quarantine_retrieve",
        responses={200: QuarantineOutput, 404: ErrorOutput},
        tags=[QUARANTINE_TAG],
    )
    def get(self, request: Request, quarantine_id: int) -> Response:
        return Response(QuarantineOutput(selectors.quarantine_get(quarantine_id=quarantine_id)).data)


class ReplayInput(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, min_length=1, max_length=MAX_REPLAY
    )
    source_id = serializers.UUIDField(required=False)
    reason = serializers.CharField(required=False)
    stage = serializers.CharField(required=False)
    after_id = serializers.IntegerField(required=False, min_value=0, help_text="Continue after this id.")
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_REPLAY, default=100, help_text="Per call, when replaying by filter."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(key in attrs for key in ("ids", "source_id", "reason", "stage")):
            raise serializers.ValidationError("give ids, or at least one of source_id, reason and stage")
        return attrs


class ReplayResultOutput(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=["accepted", "quarantined", "skipped"])
    reason = serializers.CharField(help_text="Why it is still quarantined, or why it was skipped.")
    detail = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)


class ReplayOutput(serializers.Serializer):
    accepted = serializers.IntegerField()
    quarantined = serializers.IntegerField()
    skipped = serializers.IntegerField()
    last_id = serializers.IntegerField(allow_null=True, help_text="Pass as after_id to continue.")
    more = serializers.BooleanField(help_text="Whether more open messages match the filter after last_id.")
    results = ReplayResultOutput(many=True)


class QuarantineReplayApi(APIView):
    @extend_schema(
        operation_id="quarantine_replay",
        summary="Submit quarantined messages to ingestion again",
        description="By ids, or by filter (source_id, reason, stage) in id order, `limit` at a time. Each "
        "message keeps its source, messageId and receipt time, so dedup holds and its timestamp is the "
        "one it would first have had. Accepted ones are resolved and linked to their event; ones rejected "
        "again stay open with the new reason.",
        request=ReplayInput,
        responses={200: ReplayOutput, 400: ErrorOutput},
        tags=[QUARANTINE_TAG],
    )
    def post(self, request: Request) -> Response:
        data = ReplayInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = quarantine_replay(**data.validated_data)
        return Response(
            ReplayOutput(
                {
                    "accepted": report.count("accepted"),
                    "quarantined": report.count("quarantined"),
                    "skipped": report.count("skipped"),
                    "last_id": report.last_id,
                    "more": report.more,
                    "results": report.results,
                }
            ).data
        )


class SchemaPolicyOutput(serializers.Serializer):
    source_id = serializers.UUIDField(source="id")
    source_name = serializers.CharField(source="name")
    policy = serializers.ChoiceField(
        source="schema_policy",
        choices=SchemaPolicy.choices,
        help_text="enforce: violations are quarantined; warn: stored, tagged with the violations; "
        "allow: not validated.",
    )
    updated_at = serializers.DateTimeField()


class SchemaPolicyInput(serializers.Serializer):
    policy = serializers.ChoiceField(choices=SchemaPolicy.choices)


class SourceSchemaPolicyApi(APIView):
    @extend_schema(
        operation_id="sources_schema_policy_retrieve",
        summary="What ingestion does with the source's messages a schema covers",
        responses={200: SchemaPolicyOutput, 404: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def get(self, request: Request, source_id: UUID) -> Response:
        source: Source = selectors.source_get(source_id=source_id)
        return Response(SchemaPolicyOutput(source).data)

    @extend_schema(
        operation_id="sources_schema_policy_update",
        summary="Set the source's schema policy: enforce, warn or allow",
        description="Ingestion processes apply it within SCHEMAS_REFRESH_SECONDS.",
        request=SchemaPolicyInput,
        responses={200: SchemaPolicyOutput, 400: ErrorOutput, 404: ErrorOutput},
        tags=[SCHEMAS_TAG],
    )
    def patch(self, request: Request, source_id: UUID) -> Response:
        data = SchemaPolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        source = services.source_schema_policy_set(source_id=source_id, policy=data.validated_data["policy"])
        return Response(SchemaPolicyOutput(source).data)
