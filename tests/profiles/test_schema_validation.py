"""Validation at ingestion: policies, which schema applies, the cache, and the quarantine rows."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from profiles.contracts import SourceInfo
from profiles.messages import Message, parse_message
from profiles.models import EventSchemaVersion, SchemaPolicy, SchemaStatus, Source
from profiles.schemas import validation
from profiles.schemas.services import event_schema_version_publish
from profiles.schemas.validation import message_as_raw, schemas_check, schemas_validate
from tests.factories import EventSchemaFactory, EventSchemaVersionFactory, SourceFactory

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORDER = {
    "type": "object",
    "properties": {"total": {"type": "number", "minimum": 0}, "currency": {"type": "string"}},
    "required": ["total"],
}


@pytest.fixture(autouse=True)
def _fresh_registry(settings: Any) -> Iterator[None]:
    settings.SCHEMAS_REFRESH_SECONDS = 0
    validation.schemas_cache_clear()
    yield
    validation.schemas_cache_clear()


def info(source: Source) -> SourceInfo:
    return SourceInfo(
        id=source.id,
        name=source.name,
        channel=source.channel,
        enabled=source.enabled,
        identity_kinds=frozenset(),
    )


def message(raw: dict[str, Any]) -> Message:
    return parse_message({"anonymousId": "a-1", **raw}, call_type=None, received_at=RECEIVED)


def order(total: Any, **extra: Any) -> Message:
    return message({"type": "track", "event": "Order Completed", "properties": {"total": total, **extra}})


def active(event_name: str = "Order Completed", document: Any = None, **schema: Any) -> EventSchemaVersion:
    return EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_name=event_name, **schema),
        document=document or ORDER,
        status=SchemaStatus.ACTIVE,
    )


@pytest.mark.django_db
def test_allow_policy_validates_nothing() -> None:
    active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ALLOW)
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert (verdict.version_id, verdict.violations) == (None, [])


@pytest.mark.django_db
def test_warn_policy_names_the_version_and_the_violations() -> None:
    version = active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert (verdict.version_id, verdict.quarantine, verdict.violations) == (
        version.id,
        False,
        [{"path": "/total", "keyword": "type", "message": "'free' is not of type 'number'"}],
    )


@pytest.mark.django_db
def test_enforce_policy_quarantines_a_violation() -> None:
    active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    [verdict] = schemas_validate(source=info(source), messages=[order(-1)])
    assert verdict.quarantine is True


@pytest.mark.django_db
def test_a_valid_message_names_the_version_it_was_checked_against() -> None:
    version = active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    [verdict] = schemas_validate(source=info(source), messages=[order(10)])
    assert (verdict.version_id, verdict.version, verdict.violations, verdict.quarantine) == (
        version.id,
        "1-0-0",
        [],
        False,
    )


@pytest.mark.django_db
def test_a_message_without_a_schema_is_not_validated() -> None:
    active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    [verdict] = schemas_validate(source=info(source), messages=[message({"type": "track", "event": "Other"})])
    assert verdict.version_id is None


@pytest.mark.django_db
def test_a_draft_or_deprecated_version_does_not_validate() -> None:
    schema = EventSchemaFactory.create(event_name="Order Completed")
    EventSchemaVersionFactory.create(schema=schema, version="1-0-0", document=ORDER, status=SchemaStatus.DEPRECATED)
    EventSchemaVersionFactory.create(schema=schema, version="1-0-1", document=ORDER, status=SchemaStatus.DRAFT)
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert verdict.version_id is None


@pytest.mark.django_db
def test_identify_is_validated_against_its_traits() -> None:
    EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_type="identify", event_name=""),
        document={"type": "object", "properties": {"email": {"type": "string", "pattern": "@"}}},
        status=SchemaStatus.ACTIVE,
    )
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    identify = message({"type": "identify", "userId": "u-1", "traits": {"email": "nobody"}})
    [verdict] = schemas_validate(source=info(source), messages=[identify])
    assert [v["path"] for v in verdict.violations] == ["/email"]


@pytest.mark.django_db
def test_a_source_schema_comes_before_the_global_one() -> None:
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    active()
    own = active(source=source, document={"type": "object"})
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert (verdict.version_id, verdict.violations) == (own.id, [])


@pytest.mark.django_db
def test_another_sources_schema_does_not_apply() -> None:
    active(source=SourceFactory.create())
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert verdict.version_id is None


@pytest.mark.django_db
def test_a_named_page_schema_comes_before_the_one_for_every_page() -> None:
    every_page = EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_type="page", event_name=""), status=SchemaStatus.ACTIVE
    )
    pricing = EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_type="page", event_name="Pricing"), status=SchemaStatus.ACTIVE
    )
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    pages = [message({"type": "page", "name": "Pricing"}), message({"type": "page", "name": "Home"})]
    assert [v.version_id for v in schemas_validate(source=info(source), messages=pages)] == [
        pricing.id,
        every_page.id,
    ]


@pytest.mark.django_db
def test_violations_are_capped() -> None:
    document = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(30)}}
    active(document=document)
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    [verdict] = schemas_validate(source=info(source), messages=[order(1, **{f"p{i}": i for i in range(30)})])
    assert len(verdict.violations) == validation.MAX_VIOLATIONS


@pytest.mark.django_db
def test_check_splits_the_batch_into_stored_and_quarantined() -> None:
    version = active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    check = schemas_check(source=info(source), messages=[order(5), order("free"), order(7)], received_at=RECEIVED)
    assert (
        [m.properties["total"] for m in check.accepted],
        check.version_ids,
        [position for position, _ in check.rejected],
    ) == ([5, 7], [version.id, version.id], [1])


@pytest.mark.django_db
def test_check_under_warn_stores_everything_with_its_violations() -> None:
    active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    check = schemas_check(source=info(source), messages=[order(5), order("free")], received_at=RECEIVED)
    assert [len(v) for v in check.violations] == [0, 1]


@pytest.mark.django_db
def test_a_quarantined_message_is_kept_with_stage_reason_and_every_error() -> None:
    active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    check = schemas_check(source=info(source), messages=[order(-1, currency=3)], received_at=RECEIVED)
    [row] = check.quarantine
    assert (row.stage, row.reason, row.source_id, row.detail) == (
        "schema",
        "schema_violation",
        source.id,
        "track 'Order Completed' 1-0-0: /currency: 3 is not of type 'string'; /total: -1 is less than the minimum of 0",
    )


def test_a_message_kept_as_raw_parses_back_to_the_same_message() -> None:
    original = parse_message(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-1",
            "messageId": "m-1",
            "originalTimestamp": "2026-11-23T11:59:00+00:00",
            "sentAt": "2026-11-23T12:00:30+00:00",
            "properties": {"total": 1},
            "context": {"ip": "10.0.0.1"},
            "integrations": {"All": False},
        },
        call_type=None,
        received_at=RECEIVED,
    )
    later = datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_message(message_as_raw(original), call_type=None, received_at=later) == original


@pytest.mark.django_db
def test_the_registry_is_cached_between_refreshes(settings: Any) -> None:
    settings.SCHEMAS_REFRESH_SECONDS = 3600
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    schemas_validate(source=info(source), messages=[order("free")])
    active()
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert verdict.version_id is None


@pytest.mark.django_db
def test_a_change_is_seen_at_the_next_refresh() -> None:
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    schemas_validate(source=info(source), messages=[order("free")])
    version = active()
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert verdict.version_id == version.id


@pytest.mark.django_db
def test_a_policy_change_is_seen_at_the_next_refresh() -> None:
    active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.ALLOW)
    schemas_validate(source=info(source), messages=[order("free")])
    source.schema_policy = SchemaPolicy.ENFORCE
    source.save()
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert verdict.quarantine is True


@pytest.mark.django_db
def test_publishing_drops_the_cache_in_this_process_at_once(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SCHEMAS_REFRESH_SECONDS = 3600
    source = SourceFactory.create(schema_policy=SchemaPolicy.ENFORCE)
    schemas_validate(source=info(source), messages=[order("free")])
    draft = EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_name="Order Completed"), document=ORDER
    )
    with django_capture_on_commit_callbacks(execute=True):
        event_schema_version_publish(version=draft)
    [verdict] = schemas_validate(source=info(source), messages=[order("free")])
    assert verdict.version_id == draft.id


@pytest.mark.django_db
def test_a_validator_is_compiled_once_per_version() -> None:
    version = active()
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    schemas_validate(source=info(source), messages=[order(1)])
    compiled = validation._validators[(version.schema_id, version.version)]
    validation.schemas_cache_clear()
    schemas_validate(source=info(source), messages=[order(2)])
    assert validation._validators[(version.schema_id, version.version)] is compiled


@pytest.mark.django_db
def test_a_document_the_fast_check_cannot_compile_is_still_validated() -> None:
    active(document={"type": "object", "properties": {"total": {"anyOf": [{"type": "integer"}, {"const": "n/a"}]}}})
    source = SourceFactory.create(schema_policy=SchemaPolicy.WARN)
    [verdict] = schemas_validate(source=info(source), messages=[order(1.5)])
    assert [v["keyword"] for v in verdict.violations] == ["anyOf"]
