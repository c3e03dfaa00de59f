"""Writes on the schema registry: schemas, their versions, publishing and deprecating."""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.core.errors import BadRequest, Conflict, NotFound
from profiles.models import EventSchema, EventSchemaVersion, SchemaEventType, SchemaPolicy, SchemaStatus, Source
from profiles.schemas.compat import Breach, breaking_changes
from profiles.schemas.documents import document_problem
from profiles.schemas.schemaver import Bump, SchemaVer, VersionError, bump_between, parse_version
from profiles.schemas.validation import schemas_cache_clear

MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class PublishResult:
    version: EventSchemaVersion
    previous: EventSchemaVersion | None
    bump: Bump | None
    breaking_changes: list[Breach] = field(default_factory=list)


def event_schema_create(
    *, event_type: str, event_name: str = "", source_id: UUID | None = None, description: str = ""
) -> EventSchema:
    """Register the schema of one kind of message, global or for one source (no version yet)."""
    if event_type not in SchemaEventType.values:
        raise BadRequest(f"event_type must be one of {SchemaEventType.values}", code="invalid_event_type")
    event_name = event_name.strip()
    if event_type == SchemaEventType.TRACK and not event_name:
        raise BadRequest("a track schema needs the event name", code="invalid_event_name")
    if event_type == SchemaEventType.IDENTIFY and event_name:
        raise BadRequest(
            "an identify schema covers the traits of every identify: give no name", code="invalid_event_name"
        )
    if len(event_name) > MAX_NAME_LENGTH:
        raise BadRequest(f"event_name is longer than {MAX_NAME_LENGTH} characters", code="invalid_event_name")
    if source_id is not None and not Source.objects.filter(id=source_id).exists():
        raise NotFound(f"no source {source_id}", code="source_not_found")
    schema = EventSchema(event_type=event_type, event_name=event_name, source_id=source_id, description=description)
    try:
        with transaction.atomic():
            schema.save()
    except IntegrityError:
        scope = f"source {source_id}" if source_id else "every source"
        raise Conflict(f"a {event_type} schema for {event_name!r} on {scope} exists", code="schema_exists") from None
    return schema


def _checked_document(document: Any) -> Any:
    problem = document_problem(document)
    if problem is not None:
        raise BadRequest(problem, code="invalid_schema_document")
    return document


def event_schema_version_create(*, schema: EventSchema, version: str, document: Any) -> EventSchemaVersion:
    """Add a draft version; it validates nothing until published."""
    try:
        parsed = parse_version(version)
    except VersionError as error:
        raise BadRequest(str(error), code="invalid_version") from None
    row = EventSchemaVersion(
        schema=schema,
        version=str(parsed),
        model=parsed.model,
        revision=parsed.revision,
        addition=parsed.addition,
        document=_checked_document(document),
        status=SchemaStatus.DRAFT,
    )
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        raise Conflict(f"version {parsed} of this schema exists", code="version_exists") from None
    return row


@transaction.atomic
def event_schema_version_update(*, version: EventSchemaVersion, document: Any) -> EventSchemaVersion:
    """Replace a draft's document; a published version never changes."""
    row = EventSchemaVersion.objects.select_for_update().get(pk=version.pk)
    if row.status != SchemaStatus.DRAFT:
        raise Conflict(f"version {row.version} is {row.status}; only a draft can change", code="not_a_draft")
    row.document = _checked_document(document)
    row.save(update_fields=["document", "updated_at"])
    return row


def _version_of(row: EventSchemaVersion) -> SchemaVer:
    return SchemaVer(row.model, row.revision, row.addition)


@transaction.atomic
def event_schema_version_publish(*, version: EventSchemaVersion) -> PublishResult:
    """Make a draft the active version, deprecating the one it replaces. The version must come
    after every published one; an ADDITION must accept all the active version accepted."""
    EventSchema.objects.select_for_update().get(pk=version.schema_id)
    row = EventSchemaVersion.objects.get(pk=version.pk)
    if row.status != SchemaStatus.DRAFT:
        raise Conflict(f"version {row.version} is {row.status}; only a draft can be published", code="not_a_draft")
    _checked_document(row.document)
    new = _version_of(row)
    latest = (
        EventSchemaVersion.objects.filter(schema_id=row.schema_id)
        .exclude(status=SchemaStatus.DRAFT)
        .order_by("-model", "-revision", "-addition")
        .first()
    )
    bump: Bump | None = None
    if latest is not None:
        try:
            bump = bump_between(_version_of(latest), new)
        except VersionError:
            raise Conflict(
                f"version {new} must come after {latest.version}, the latest published",
                code="version_not_increasing",
                extra={"latest": latest.version},
            ) from None
    active = EventSchemaVersion.objects.filter(schema_id=row.schema_id, status=SchemaStatus.ACTIVE).first()
    breaches = breaking_changes(active.document, row.document) if active is not None else []
    if active is not None and bump == Bump.ADDITION and breaches:
        current = _version_of(active)
        raise Conflict(
            f"{new} is an ADDITION to {active.version} but the new document rejects messages the current one "
            f"accepts ({len(breaches)} breaking change{'s' if len(breaches) > 1 else ''}); publish it as a "
            f"REVISION ({current.model}-{current.revision + 1}-0) or a MODEL ({current.model + 1}-0-0)",
            code="incompatible_version",
            extra={
                "bump": Bump.ADDITION.value,
                "active": active.version,
                "breaking_changes": [breach.as_dict() for breach in breaches],
            },
        )
    now = timezone.now()
    if active is not None:
        active.status = SchemaStatus.DEPRECATED
        active.deprecated_at = now
        active.save(update_fields=["status", "deprecated_at", "updated_at"])
    row.status = SchemaStatus.ACTIVE
    row.published_at = now
    row.save(update_fields=["status", "published_at", "updated_at"])
    transaction.on_commit(schemas_cache_clear)
    return PublishResult(version=row, previous=active, bump=bump, breaking_changes=breaches)


@transaction.atomic
def event_schema_version_deprecate(*, version: EventSchemaVersion) -> EventSchemaVersion:
    """Retire the active version: its schema validates nothing until another is published."""
    EventSchema.objects.select_for_update().get(pk=version.schema_id)
    row = EventSchemaVersion.objects.get(pk=version.pk)
    if row.status != SchemaStatus.ACTIVE:
        raise Conflict(
            f"version {row.version} is {row.status}; only the active one can be deprecated", code="not_active"
        )
    row.status = SchemaStatus.DEPRECATED
    row.deprecated_at = timezone.now()
    row.save(update_fields=["status", "deprecated_at", "updated_at"])
    transaction.on_commit(schemas_cache_clear)
    return row


def source_schema_policy_set(*, source_id: UUID, policy: str) -> Source:
    """Set what ingestion does with the source's messages that a schema covers (enforce, warn,
    allow); every process picks it up at its next schema snapshot check."""
    if policy not in SchemaPolicy.values:
        raise BadRequest(f"policy must be one of {SchemaPolicy.values}", code="invalid_policy")
    with transaction.atomic():
        source = Source.objects.select_for_update().filter(id=source_id).first()
        if source is None:
            raise NotFound(f"no source {source_id}", code="source_not_found")
        if source.schema_policy != policy:
            source.schema_policy = policy
            # updated_at is part of the snapshot stamp other processes compare.
            source.save(update_fields=["schema_policy", "updated_at"])
            transaction.on_commit(schemas_cache_clear)
    return source
