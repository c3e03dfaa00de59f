"""An event written for a customer while that customer is being merged lands on the survivor,
whichever transaction gets there first: the merge moves the events it can see, so a writer either
finishes before the merge reads them or writes to the survivor.

Each test holds one transaction open in a thread and starts the other (routing with its session
derivation, or ingestion) against it, so the order that lost events before is the order tested,
every run."""

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.utils import timezone

from orchestration.routing import route
from profiles.ingest import event_ingest
from profiles.merging import customer_merge
from profiles.models import Customer, Event
from profiles.selectors import source_for_write_key
from tests.factories import CustomerFactory, IdentityFactory
from tests.profiles.concurrency import held_open, started_and_waiting

pytestmark = pytest.mark.django_db(transaction=True)


def _ann_about_to_merge(source: Any) -> tuple[Customer, Customer, int]:
    """Ann's newer profile (user id "ann") with an event waiting to be routed, and her older
    profile (her email), which survives a merge of the two."""
    older = CustomerFactory.create(created_at=timezone.now() - timedelta(days=1))
    IdentityFactory.create(customer=older, kind="email", value="ann@example.com")
    newer = CustomerFactory.create()
    IdentityFactory.create(customer=newer, kind="user_id", value="ann")
    result = _track(source, {"userId": "ann", "event": "Tried It", "messageId": "tried"})
    assert result.accepted == 1
    assert Event.objects.get(id=result.event_ids[0]).customer_id == newer.id
    return older, newer, result.event_ids[0]


def _track(source: Any, message: dict[str, Any], call: str = "track") -> Any:
    info = source_for_write_key(source.write_key)
    assert info is not None
    return event_ingest(source=info, raw_messages=[message], call_type=call, received_at=timezone.now())


def _merge(older: Customer, newer: Customer) -> UUID | None:
    return customer_merge(customer_ids=[older.id, newer.id], reason="support", actor="token:test").survivor_id


def _events_of(customer_id: UUID) -> list[str]:
    return sorted(Event.objects.filter(customer_id=customer_id).values_list("name", flat=True))


def test_a_session_started_by_routing_during_a_merge_lands_on_the_survivor(source: Any) -> None:
    older, newer, event_id = _ann_about_to_merge(source)
    with held_open(lambda: _merge(older, newer)):
        routing = started_and_waiting(lambda: route([event_id]))
    assert routing.join() == 1
    assert _events_of(older.id) == ["Session Started", "Tried It"]
    assert _events_of(newer.id) == []


def test_a_merge_during_routing_moves_the_session_started_it_waited_for(source: Any) -> None:
    older, newer, event_id = _ann_about_to_merge(source)
    with held_open(lambda: route([event_id])):
        merging = started_and_waiting(lambda: _merge(older, newer))
    assert merging.join() == older.id
    assert _events_of(older.id) == ["Session Started", "Tried It"]
    assert _events_of(newer.id) == []


def test_a_track_call_during_a_merge_lands_on_the_survivor(source: Any) -> None:
    """A call that names one identity is stored by one statement of its own (the fast path)."""
    older, newer, _ = _ann_about_to_merge(source)
    with held_open(lambda: _merge(older, newer)):
        tracking = started_and_waiting(lambda: _track(source, {"userId": "ann", "event": "Clicked"}))
    assert tracking.join().accepted == 1
    assert _events_of(older.id) == ["Clicked", "Tried It"]


def test_an_identify_during_a_merge_lands_with_its_traits_on_the_survivor(source: Any) -> None:
    """Two identities and traits: the general path, which resolves, then writes traits and events."""
    older, newer, _ = _ann_about_to_merge(source)
    message = {"userId": "ann", "anonymousId": "ann-phone", "traits": {"plan": "pro"}}
    with held_open(lambda: _merge(older, newer)):
        identifying = started_and_waiting(lambda: _track(source, message, "identify"))
    assert identifying.join().accepted == 1
    assert _events_of(older.id) == ["", "Tried It"]
    older.refresh_from_db()
    assert older.traits.get("plan") == "pro"
