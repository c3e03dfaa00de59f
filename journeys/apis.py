"""The journeys management API: simulate a version, publish it (with a migration map) or
preview the migration, start an API-triggered enrollment, and explain a customer's journeys.
No logic here: services write, selectors read, serializers shape."""

from typing import Any
from uuid import UUID

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core.errors import BadRequest, NotFound
from journeys import selectors, services
from journeys.definition import validate_definition
from journeys.models import Enrollment, JourneyVersion, StepRun
from journeys.simulation import SimulationError, simulate
from profiles import facade as profiles

TAGS = ["journeys"]
MAX_SIMULATED_EVENTS = 1000
MAX_SIMULATED_DAYS = 366


class StepRunOutput(serializers.ModelSerializer[StepRun]):
    class Meta:
        model = StepRun
        fields = ["key", "step", "kind", "visit", "at", "outcome", "detail"]


class EnrollmentOutput(serializers.ModelSerializer[Enrollment]):
    journey = serializers.CharField(source="journey.key")
    journey_id = serializers.UUIDField()
    version = serializers.IntegerField(source="version.number")
    history = serializers.SerializerMethodField()

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "journey",
            "journey_id",
            "version",
            "customer_id",
            "status",
            "step",
            "visit",
            "waiting_for",
            "state",
            "entered_at",
            "ended_at",
            "end_reason",
            "converted",
            "history",
        ]

    @extend_schema_field(StepRunOutput(many=True))
    def get_history(self, enrollment: Enrollment) -> list[dict[str, Any]]:
        runs = sorted(enrollment.history.all(), key=lambda run: run.id)
        return list(StepRunOutput(runs, many=True).data)


def _version(journey_id: UUID, number: int) -> JourneyVersion:
    version = selectors.version_get(journey_id=journey_id, number=number)
    if version is None:
        raise NotFound("no such journey version", code="version_not_found")
    return version


class MigrationInput(serializers.Serializer[Any]):
    migration_map = serializers.DictField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=dict,
        help_text="Old step id -> new step id: customers waiting at an old step move to the new one.",
    )


MigrationOutput = inline_serializer(
    "JourneyMigrationPreview",
    {
        "from_version": serializers.IntegerField(allow_null=True),
        "to_version": serializers.IntegerField(),
        "moves": serializers.ListField(child=serializers.DictField()),
        "stay": serializers.ListField(child=serializers.DictField()),
        "errors": serializers.ListField(child=serializers.DictField()),
        "moving": serializers.IntegerField(),
        "staying": serializers.IntegerField(),
    },
)


class VersionPreviewApi(APIView):
    @extend_schema(
        operation_id="journey_versions_preview",
        summary="Preview publishing a version: how many waiting customers would move where",
        description="Counts the published version's active enrollments by step: those whose step is in "
        "`migration_map` would move to the mapped step of this version, the rest stay on the version they "
        "entered. `errors` lists map entries naming unknown steps. Nothing changes.",
        request=MigrationInput,
        responses={200: MigrationOutput},
        tags=TAGS,
    )
    def post(self, request: Request, journey_id: UUID, number: int) -> Response:
        data = MigrationInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = _version(journey_id, number)
        preview = services.version_migration_preview(
            version=version, migration_map=data.validated_data["migration_map"]
        )
        return Response(preview.as_dict())


class VersionPublishApi(APIView):
    @extend_schema(
        operation_id="journey_versions_publish",
        summary="Publish a draft version, optionally migrating waiting customers",
        description="Validates the definition (400 `invalid_definition` with `errors`, each a JSON pointer "
        "to the bad step), archives the published version and moves its waiting customers whose step is "
        "in `migration_map` (400 `invalid_migration_map` when it names unknown steps). 409 when the "
        "version is not a draft.",
        request=MigrationInput,
        responses={200: MigrationOutput, 400: OpenApiResponse(description="Invalid definition or map"), 409: None},
        tags=TAGS,
    )
    def post(self, request: Request, journey_id: UUID, number: int) -> Response:
        data = MigrationInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = _version(journey_id, number)
        moved = services.journey_publish(version=version, migration_map=data.validated_data["migration_map"])
        return Response(moved.as_dict())


class SimulateInput(serializers.Serializer[Any]):
    profile = serializers.DictField(
        required=False,
        default=dict,
        help_text="traits, computed, segments (list), consent, session, unavailable ({channel: reason}), "
        "contact ({channel or '*': {reason, until}}) and customer_id.",
    )
    events = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        default=list,
        max_length=MAX_SIMULATED_EVENTS,
        help_text='[{"event": "Order Completed", "at": ISO time, "properties": {...}, "channel": "web"}]',
    )
    start_at = serializers.DateTimeField()
    until = serializers.DateTimeField()
    outcomes = serializers.DictField(
        child=serializers.ChoiceField(choices=["sent", "delivered", "failed", "none"]),
        required=False,
        default=dict,
        help_text='What each channel does with a message ("*" for any): delivered by default.',
    )
    links = serializers.DictField(child=serializers.CharField(), required=False, default=dict)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["until"] < attrs["start_at"]:
            raise serializers.ValidationError({"until": "must not be before start_at"})
        if (attrs["until"] - attrs["start_at"]).days > MAX_SIMULATED_DAYS:
            raise serializers.ValidationError({"until": f"at most {MAX_SIMULATED_DAYS} days after start_at"})
        return attrs


SimulateOutput = inline_serializer(
    "JourneySimulation",
    {
        "path": serializers.ListField(child=serializers.DictField()),
        "messages": serializers.ListField(child=serializers.DictField()),
        "timers": serializers.ListField(child=serializers.DictField()),
        "traits_set": serializers.ListField(child=serializers.DictField()),
        "events_emitted": serializers.ListField(child=serializers.DictField()),
        "webhooks": serializers.ListField(child=serializers.DictField()),
        "enrollments": serializers.ListField(child=serializers.DictField()),
        "skipped_entries": serializers.ListField(child=serializers.DictField()),
    },
)


class VersionSimulateApi(APIView):
    @extend_schema(
        operation_id="journey_versions_simulate",
        summary="Simulate a version on a virtual clock, with no side effects",
        description="A starting profile and timestamped events in; the path taken (with what each condition "
        "saw), the messages that would be sent and the timers set out. Nothing is written or sent. Works "
        "on drafts too; an invalid definition answers 400 with `errors`.",
        request=SimulateInput,
        responses={200: SimulateOutput, 400: OpenApiResponse(description="Invalid input or definition")},
        tags=TAGS,
    )
    def post(self, request: Request, journey_id: UUID, number: int) -> Response:
        data = SimulateInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = _version(journey_id, number)
        errors = validate_definition(version.definition)
        if errors:
            raise BadRequest(
                "the version's definition is invalid",
                code="invalid_definition",
                extra={"errors": [error.as_dict() for error in errors]},
            )
        values = data.validated_data
        try:
            result = simulate(
                version.definition,
                values["profile"],
                values["events"],
                values["start_at"],
                values["until"],
                outcomes=values["outcomes"],
                links=values["links"],
                fallback_timezone=settings.JOURNEYS_FALLBACK_TIMEZONE,
                journey_key=version.journey.key,
            )
        except SimulationError as error:
            raise BadRequest(error.message, code="invalid_simulation", extra={"path": error.path}) from error
        return Response(result.as_dict())


class EnrollmentInput(serializers.Serializer[Any]):
    customer_id = serializers.UUIDField()
    properties = serializers.DictField(
        required=False, default=dict, help_text="Shown to templates as event.properties."
    )


class JourneyEnrollApi(APIView):
    @extend_schema(
        operation_id="journey_enrollments_create",
        summary="Enter a customer into an API-triggered journey",
        description="Runs the published version from its start until it waits. 409 `reentry_refused` when the "
        "re-entry policy says no, `journey_not_published` or `journey_not_api_triggered` otherwise.",
        request=EnrollmentInput,
        responses={201: EnrollmentOutput, 404: None, 409: None},
        tags=TAGS,
    )
    def post(self, request: Request, journey_id: UUID) -> Response:
        data = EnrollmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        journey = selectors.journey_get(journey_id=journey_id)
        if journey is None:
            raise NotFound("no such journey", code="journey_not_found")
        enrollment = services.enrollment_start(
            journey=journey,
            customer_id=data.validated_data["customer_id"],
            properties=data.validated_data["properties"],
        )
        row = selectors.enrollment_get(enrollment_id=enrollment.id)
        return Response(EnrollmentOutput(row).data, status=status.HTTP_201_CREATED)


class EnrollmentDetailApi(APIView):
    @extend_schema(
        operation_id="enrollments_retrieve",
        summary="An enrollment with its history: each step, what its conditions saw, and why",
        responses={200: EnrollmentOutput, 404: None},
        tags=TAGS,
    )
    def get(self, request: Request, enrollment_id: UUID) -> Response:
        enrollment = selectors.enrollment_get(enrollment_id=enrollment_id)
        if enrollment is None:
            raise NotFound("no such enrollment", code="enrollment_not_found")
        return Response(EnrollmentOutput(enrollment).data)


class CustomerJourneysApi(APIView):
    @extend_schema(
        operation_id="customer_journeys_list",
        summary="A customer's journeys, newest first, each with its history",
        description="Answers why a customer did or did not get a message: each step, the inputs each "
        "condition saw, the branch chosen and why, messages held or skipped by the contact policy and "
        "why. Includes the enrollments of profiles merged into this one.",
        responses={200: EnrollmentOutput(many=True), 404: None},
        tags=TAGS,
    )
    def get(self, request: Request, customer_id: UUID) -> Response:
        cluster = profiles.customer_cluster(customer_id=customer_id)
        if cluster is None:
            raise NotFound("no such customer", code="customer_not_found")
        enrollments = selectors.customer_enrollments(customer_ids=list(cluster.member_ids))
        return Response(EnrollmentOutput(enrollments, many=True).data)
