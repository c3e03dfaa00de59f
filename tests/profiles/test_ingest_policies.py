"""Schema policies and erasure suppression, end to end through /v1."""

from collections.abc import Iterator
from typing import Any

import pytest

from profiles.models import Customer, Event, QuarantinedMessage, SchemaPolicy, Source
from profiles.privacy.services import customer_erase
from profiles.schemas.services import event_schema_create, event_schema_version_create, event_schema_version_publish
from profiles.schemas.validation import schemas_cache_clear

pytestmark = pytest.mark.django_db

ORDER = {
    "type": "object",
    "properties": {"total": {"type": "number"}},
    "required": ["total"],
}


@pytest.fixture
def order_schema() -> Iterator[Any]:
    schema = event_schema_create(event_type="track", event_name="Order Completed")
    version = event_schema_version_create(schema=schema, version="1-0-0", document=ORDER)
    event_schema_version_publish(version=version)
    schemas_cache_clear()
    yield version
    schemas_cache_clear()


def _policy(source: Any, policy: str) -> None:
    Source.objects.filter(id=source.id).update(schema_policy=policy)
    schemas_cache_clear()


def test_enforce_quarantines_violations_and_keeps_the_rest(ingest: Any, source: Any, order_schema: Any) -> None:
    _policy(source, SchemaPolicy.ENFORCE)
    batch = [
        {"type": "track", "userId": "u", "event": "Order Completed", "properties": {"total": 10}, "messageId": "ok"},
        {"type": "track", "userId": "u", "event": "Order Completed", "properties": {}, "messageId": "bad"},
    ]
    body = ingest.post("batch", {"batch": batch}).json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["code"] == "schema_violation"
    assert QuarantinedMessage.objects.get().stage == "schema"
    assert Event.objects.get(message_id="ok").schema_version_id == order_schema.id


def test_warn_stores_violations_on_the_event(ingest: Any, source: Any, order_schema: Any) -> None:
    _policy(source, SchemaPolicy.WARN)
    ingest.post("track", {"userId": "u", "event": "Order Completed", "properties": {}, "messageId": "w"})
    event = Event.objects.get(message_id="w")
    assert event.schema_version_id == order_schema.id
    assert "total" in event.schema_violations[0]["message"]


def test_allow_does_not_validate(ingest: Any, source: Any, order_schema: Any) -> None:
    ingest.post("track", {"userId": "u", "event": "Order Completed", "properties": {}, "messageId": "a"})
    assert Event.objects.get(message_id="a").schema_version_id is None


def test_a_single_call_refused_by_its_schema_is_400(ingest: Any, source: Any, order_schema: Any) -> None:
    _policy(source, SchemaPolicy.ENFORCE)
    response = ingest.post("track", {"userId": "u", "event": "Order Completed", "properties": {"total": "ten"}})
    assert response.status_code == 400
    assert response.json()["code"] == "schema_violation"


def test_events_of_a_person_erased_with_suppression_are_not_stored(ingest: Any) -> None:
    ingest.post("identify", {"userId": "gone", "traits": {"email": "gone@example.com"}})
    customer_erase(customer_id=Customer.objects.get().id, suppress=True, reason="GDPR request", actor="test")
    response = ingest.post(
        "track", {"anonymousId": "new-device", "event": "Back", "context": {"traits": {"email": "Gone@Example.com"}}}
    )
    assert response.status_code == 200
    assert response.json()["suppressed"] == 1
    assert Customer.objects.count() == 0
    assert Event.objects.count() == 0


def test_erasure_without_suppression_lets_the_person_come_back(ingest: Any) -> None:
    ingest.post("identify", {"userId": "back"})
    customer_erase(customer_id=Customer.objects.get().id, suppress=False, reason="account closed", actor="test")
    ingest.post("track", {"userId": "back", "event": "Signed Up Again"})
    assert Event.objects.get().name == "Signed Up Again"
