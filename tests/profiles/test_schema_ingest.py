"""Schemas at ingestion, end to end: /v1 calls validated under each policy, and replayed."""

from collections.abc import Iterator
from typing import Any

import pytest

from profiles.models import Event, EventSchemaVersion, QuarantinedMessage, SchemaPolicy, SchemaStatus, Source
from profiles.schemas import validation
from profiles.schemas.quarantine import quarantine_replay
from profiles.schemas.services import event_schema_version_publish
from tests.factories import EventSchemaFactory, EventSchemaVersionFactory

ORDER = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}


@pytest.fixture(autouse=True)
def _fresh_registry(settings: Any) -> Iterator[None]:
    settings.SCHEMAS_REFRESH_SECONDS = 0
    validation.schemas_cache_clear()
    yield
    validation.schemas_cache_clear()


@pytest.fixture
def order_schema(db: Any) -> EventSchemaVersion:
    return EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_name="Order Completed"), document=ORDER, status=SchemaStatus.ACTIVE
    )


def with_policy(source: Source, policy: str) -> Source:
    source.schema_policy = policy
    source.save()
    return source


def order(message_id: str, total: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-1",
        "messageId": message_id,
        "properties": {"total": total},
    }


def test_enforce_stores_the_valid_and_quarantines_the_invalid(
    ingest: Any, source: Source, order_schema: EventSchemaVersion
) -> None:
    with_policy(source, SchemaPolicy.ENFORCE)
    response = ingest.post("batch", {"batch": [order("ok", 10), order("bad", "ten")]})
    assert (
        response.json()["errors"][0]["code"],
        list(Event.objects.values_list("message_id", "schema_version_id")),
        list(QuarantinedMessage.objects.values_list("message_id", "stage", "reason")),
    ) == ("schema_violation", [("ok", order_schema.id)], [("bad", "schema", "schema_violation")])


def test_warn_stores_the_invalid_tagged_with_its_violations(
    ingest: Any, source: Source, order_schema: EventSchemaVersion
) -> None:
    with_policy(source, SchemaPolicy.WARN)
    ingest.post("track", order("bad", "ten"))
    event = Event.objects.get()
    assert (event.schema_version_id, [v["path"] for v in event.schema_violations]) == (order_schema.id, ["/total"])


def test_allow_stores_without_validating(ingest: Any, source: Source, order_schema: EventSchemaVersion) -> None:
    ingest.post("track", order("bad", "ten"))
    assert list(Event.objects.values_list("schema_version_id", "schema_violations")) == [(None, [])]


def test_a_message_its_schema_rejected_is_stored_by_a_replay_after_the_fix(
    ingest: Any, source: Source, order_schema: EventSchemaVersion, django_capture_on_commit_callbacks: Any
) -> None:
    with_policy(source, SchemaPolicy.ENFORCE)
    ingest.post("track", order("bad", "ten"))
    fixed = EventSchemaVersionFactory.create(
        schema=order_schema.schema,
        version="1-1-0",
        document={"type": "object", "properties": {"total": {"type": ["number", "string"]}}},
    )
    with django_capture_on_commit_callbacks(execute=True):
        event_schema_version_publish(version=fixed)
    quarantine_replay(ids=[QuarantinedMessage.objects.get().id])
    assert list(Event.objects.values_list("message_id", "schema_version_id")) == [("bad", fixed.id)]


def test_a_message_its_schema_still_rejects_stays_in_the_same_row(
    ingest: Any, source: Source, order_schema: EventSchemaVersion
) -> None:
    with_policy(source, SchemaPolicy.ENFORCE)
    ingest.post("track", order("bad", "ten"))
    row = QuarantinedMessage.objects.get()
    quarantine_replay(ids=[row.id])
    assert list(QuarantinedMessage.objects.values_list("id", "reason", "replay_count")) == [
        (row.id, "schema_violation", 1)
    ]
