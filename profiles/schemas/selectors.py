"""Reads on the schema registry and the quarantine."""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from config.core.errors import BadRequest, NotFound
from profiles.messages import MessageError, parse_message
from profiles.models import EventSchema, EventSchemaVersion, QuarantinedMessage, SchemaStatus, Source
from profiles.schemas.validation import ActiveVersion, SchemaKey, active_for, violations_of


def event_schema_list(
    *, event_type: str | None = None, event_name: str | None = None, source_id: UUID | None = None
) -> QuerySet[EventSchema]:
    schemas = EventSchema.objects.select_related("source")
    if event_type:
        schemas = schemas.filter(event_type=event_type)
    if event_name is not None:
        schemas = schemas.filter(event_name=event_name)
    if source_id is not None:
        schemas = schemas.filter(source_id=source_id)
    return schemas


def event_schema_get(*, schema_id: UUID) -> EventSchema:
    schema = EventSchema.objects.select_related("source").filter(id=schema_id).first()
    if schema is None:
        raise NotFound(f"no schema {schema_id}")
    return schema


def event_schema_versions(*, schema: EventSchema) -> QuerySet[EventSchemaVersion]:
    """Newest first."""
    return EventSchemaVersion.objects.filter(schema=schema).order_by("-model", "-revision", "-addition")


def event_schema_version_get(*, schema: EventSchema, version: str) -> EventSchemaVersion:
    row = EventSchemaVersion.objects.filter(schema=schema, version=version).first()
    if row is None:
        raise NotFound(f"no version {version!r} of schema {schema.id}")
    return row


def event_schema_active_versions(*, schema_ids: list[UUID]) -> dict[UUID, str]:
    """The active version string of each schema that has one, in one query."""
    return dict(
        EventSchemaVersion.objects.filter(schema_id__in=schema_ids, status=SchemaStatus.ACTIVE).values_list(
            "schema_id", "version"
        )
    )


@dataclass(frozen=True, slots=True)
class SampleCheck:
    valid: bool
    event_type: str
    event_name: str
    schema_id: UUID | None = None
    version: str | None = None
    violations: list[dict[str, str]] = field(default_factory=list)


def message_check(*, message: Any, source_id: UUID | None = None) -> SampleCheck:
    """Validate a sample Segment message against the active version that ingestion would use
    for it now, whatever the source's policy (read from the database, not the ingestion cache)."""
    source = None
    if source_id is not None:
        source = Source.objects.filter(id=source_id).first()
        if source is None:
            raise NotFound(f"no source {source_id}", code="source_not_found")
    try:
        parsed = parse_message(
            message,
            call_type=None,
            received_at=timezone.now(),
            external_kinds=frozenset(source.identity_kinds or ()) if source else frozenset(),
            phone_region=settings.DEFAULT_PHONE_REGION,
        )
    except MessageError as error:
        raise BadRequest(f"not a valid message: {error.detail}", code=error.code) from None
    scope = Q(schema__source__isnull=True) | Q(schema__source_id=source_id) if source_id else Q(schema__source=None)
    active: dict[SchemaKey, ActiveVersion] = {
        (v.schema.event_type, v.schema.event_name, v.schema.source_id): ActiveVersion(
            schema_id=v.schema_id,
            version_id=v.id,
            version=v.version,
            event_type=v.schema.event_type,
            event_name=v.schema.event_name,
            document=v.document,
        )
        for v in EventSchemaVersion.objects.filter(
            scope, status=SchemaStatus.ACTIVE, schema__event_type=parsed.type
        ).select_related("schema")
    }
    found = active_for(active, source_id=source_id, event_type=parsed.type, event_name=parsed.name)
    if found is None:
        return SampleCheck(valid=True, event_type=parsed.type, event_name=parsed.name)
    violations = violations_of(found, parsed.properties)
    return SampleCheck(
        valid=not violations,
        event_type=parsed.type,
        event_name=parsed.name,
        schema_id=found.schema_id,
        version=found.version,
        violations=violations,
    )


def quarantine_list(
    *, source_id: UUID | None = None, reason: str | None = None, stage: str | None = None, status: str = "open"
) -> QuerySet[QuarantinedMessage]:
    """Quarantined messages, filtered; `status` is open (not yet accepted), resolved or all."""
    rows = QuarantinedMessage.objects.all()
    if status == "open":
        rows = rows.filter(resolved_at__isnull=True)
    elif status == "resolved":
        rows = rows.filter(resolved_at__isnull=False)
    if source_id is not None:
        rows = rows.filter(source_id=source_id)
    if reason:
        rows = rows.filter(reason=reason)
    if stage:
        rows = rows.filter(stage=stage)
    return rows


def quarantine_get(*, quarantine_id: int) -> QuarantinedMessage:
    row = QuarantinedMessage.objects.filter(id=quarantine_id).first()
    if row is None:
        raise NotFound(f"no quarantined message {quarantine_id}")
    return row


def source_get(*, source_id: UUID) -> Source:
    source = Source.objects.filter(id=source_id).first()
    if source is None:
        raise NotFound(f"no source {source_id}", code="source_not_found")
    return source
