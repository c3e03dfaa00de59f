"""Answers that must be right, not nearly: consent at the same instant, what an undo gives back,
erasing while the person's events are routed, and suppression in force when the erase answers."""

import threading
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import pytest
import requests
from django.db import connection, transaction
from django.test import Client

from orchestration.routing import handlers, route
from profiles import computed, identity_rules
from profiles.computed_traits import computed_trait_create, computed_traits_of
from profiles.merging import customer_merge, customer_unmerge
from profiles.models import Customer, Event, EventOutbox, MergeRecord
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.models import Consent, ConsentChange
from profiles.privacy.services import consent_set
from profiles.selectors import customer_find
from profiles.services import outbox_claim
from tests.conftest import web_server
from tests.factories import CustomerFactory
from tests.profiles.concurrency import Thread, held_open, started_and_waiting

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _consent(customer_id: UUID, status: str, at: datetime = T0, origin: str = "api") -> list[ConsentChange]:
    return consent_set(
        customer_id=customer_id,
        choices=[ConsentChoice("marketing", "email", status)],
        origin=origin,
        actor="token:test",
        changed_at=at,
    )


def _current(customer_id: UUID) -> tuple[str, datetime]:
    row = Consent.objects.get(customer_id=customer_id, purpose="marketing", channel="email")
    return row.status, row.changed_at


# --- Consent: at the same instant, a denial wins ----------------------------------------------


@pytest.mark.django_db
def test_a_grant_at_the_same_instant_does_not_overwrite_a_denial() -> None:
    customer = CustomerFactory.create()
    _consent(customer.id, "denied")
    [grant] = _consent(customer.id, "granted")
    assert _current(customer.id) == ("denied", T0)
    assert grant.applied is False


@pytest.mark.django_db
def test_a_denial_at_the_same_instant_overwrites_a_grant() -> None:
    customer = CustomerFactory.create()
    _consent(customer.id, "granted")
    [denial] = _consent(customer.id, "denied")
    assert _current(customer.id) == ("denied", T0)
    assert denial.applied is True


@pytest.mark.django_db
def test_one_call_with_a_grant_and_a_denial_at_one_instant_denies() -> None:
    customer = CustomerFactory.create()
    consent_set(
        customer_id=customer.id,
        choices=[ConsentChoice("marketing", "email", "denied"), ConsentChoice("marketing", "email", "granted")],
        origin="api",
        actor="token:test",
        changed_at=T0,
    )
    assert _current(customer.id) == ("denied", T0)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["granted", "denied"])
def test_repeating_a_choice_at_the_same_instant_stays_applied(status: str) -> None:
    customer = CustomerFactory.create()
    _consent(customer.id, status)
    [again] = _consent(customer.id, status)
    assert _current(customer.id) == (status, T0)
    assert again.applied is True
    assert Consent.objects.get(customer_id=customer.id).change_id == again.id


@pytest.mark.django_db(transaction=True)
def test_concurrent_grant_and_denial_at_one_instant_deny_and_say_so_in_the_history() -> None:
    """The denial's transaction is still open when the grant is written: neither read the
    other's state; the grant waits, and must neither win nor be recorded as applied."""
    customer = CustomerFactory.create()
    with held_open(lambda: _consent(customer.id, "denied")):
        grant = started_and_waiting(lambda: _consent(customer.id, "granted"))
    [granted] = grant.join()
    assert _current(customer.id) == ("denied", T0)
    assert granted.applied is False
    assert ConsentChange.objects.get(id=granted.id).applied is False


# --- Undo: each profile gets back what was its own --------------------------------------------


def _route_all() -> None:
    route(list(EventOutbox.objects.values_list("event_id", flat=True)))


def _orders(customer_id: UUID) -> int:
    return computed_traits_of(Customer.objects.get(id=customer_id))["orders"]


def _ann_and_a_device_merged(ingest: Any) -> tuple[UUID, UUID, MergeRecord]:
    """Ann (two orders, on the free plan) and a device someone else used (another email, the pro
    plan, three orders, all later) merged by support: Ann's profile, the older, survives."""
    computed_trait_create(name="orders", kind="count", event_name="Order Completed")
    ingest.post(
        "identify", {"userId": "ann", "traits": {"name": "Ann", "plan": "free"}, "timestamp": "2026-11-01T10:00:00Z"}
    )
    for n in range(2):
        ingest.post("track", {"userId": "ann", "event": "Order Completed", "messageId": f"ann-{n}"})
    ingest.post(
        "identify",
        {
            "anonymousId": "device",
            "traits": {"email": "bob@example.com", "plan": "pro"},
            "timestamp": "2026-11-02T10:00:00Z",
        },
    )
    for n in range(3):
        ingest.post("track", {"anonymousId": "device", "event": "Order Completed", "messageId": f"device-{n}"})
    _route_all()
    ann = customer_find(kind="user_id", value="ann")
    device = customer_find(kind="anonymous_id", value="device")
    assert ann is not None and device is not None
    outcome = customer_merge(customer_ids=[ann.id, device.id], reason="support", actor="token:test")
    assert outcome.survivor_id == ann.id
    merged = Customer.objects.get(id=ann.id)
    assert (merged.traits["plan"], merged.traits["email"], _orders(ann.id)) == ("pro", "bob@example.com", 5)
    return ann.id, device.id, MergeRecord.objects.get()


@pytest.mark.django_db
def test_an_undo_gives_the_survivor_back_its_own_traits_and_counts(ingest: Any) -> None:
    ann, device, record = _ann_and_a_device_merged(ingest)
    customer_unmerge(record_id=record.id, actor="token:test")
    survivor = Customer.objects.get(id=ann)
    assert survivor.traits == {"name": "Ann", "plan": "free"}
    assert set(survivor.trait_times) == {"name", "plan"}
    assert _orders(ann) == 2
    separated = Customer.objects.get(id=device)
    assert separated.traits == {"email": "bob@example.com", "plan": "pro"}
    assert _orders(device) == 3


@pytest.mark.django_db
def test_what_the_survivor_got_after_the_merge_stays_with_it_after_an_undo(ingest: Any) -> None:
    ann, device, record = _ann_and_a_device_merged(ingest)
    ingest.post(
        "identify", {"userId": "ann", "traits": {"plan": "team", "city": "Paris"}, "timestamp": "2026-11-03T10:00:00Z"}
    )
    ingest.post("track", {"userId": "ann", "event": "Order Completed", "messageId": "ann-after"})
    _route_all()
    customer_unmerge(record_id=record.id, actor="token:test")
    survivor = Customer.objects.get(id=ann)
    assert survivor.traits == {"name": "Ann", "plan": "team", "city": "Paris"}
    assert _orders(ann) == 3
    assert _orders(device) == 3


# --- Erase: while the person's events are routed; suppression in force when it answers --------


@pytest.mark.django_db(transaction=True)
def test_an_erase_that_deadlocks_with_routing_runs_again_and_answers_200(ingest: Any, api_token: Any) -> None:
    """Routing holds the person's events (their outbox rows, claimed) and then waits to lock the
    person, whom the erase holds while it waits to delete those events: PostgreSQL aborts the
    erase as the deadlock's victim (routing's deadlock_timeout is the longer), and the erase
    runs again once routing has committed. route() unrolled, so the erase starts between the
    claim and the handlers; the same claim, handlers and transaction."""
    computed_trait_create(name="orders", kind="count", event_name="Order Completed")
    for n in range(3):
        assert (
            ingest.post("track", {"userId": "ann", "event": "Order Completed", "messageId": f"o{n}"}).status_code == 200
        )
    ann = customer_find(kind="user_id", value="ann")
    assert ann is not None
    event_ids = list(EventOutbox.objects.values_list("event_id", flat=True))
    claimed, go = threading.Event(), threading.Event()

    def routing() -> int:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '30s'")
            events = outbox_claim(event_ids=event_ids)
            claimed.set()
            assert go.wait(30)
            for handler in handlers():
                handler(events)
        return len(events)

    def erase() -> Any:
        return Client().post(
            f"/api/v1/customers/{ann.id}/erase",
            {"suppress": False, "reason": "GDPR art. 17 request"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api_token.secret}",
        )

    router = Thread(routing)
    assert claimed.wait(30)
    eraser = started_and_waiting(erase)
    go.set()
    assert router.join() == 3
    answer = eraser.join()
    assert answer.status_code == 200, answer.content
    assert not Customer.objects.filter(id=ann.id).exists()
    assert not Event.objects.exists()


def _post(base: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(f"{base}{path}", data=orjson.dumps(body), headers=headers, timeout=30, **kwargs)


@pytest.mark.django_db(transaction=True)
def test_an_erase_with_suppression_is_in_force_in_every_process_when_it_answers(
    source: Any, api_token: Any, client: Client, settings: Any
) -> None:
    """Two processes caching "no suppression in force" for 3 s, as production does for 5: a
    server ingests, this process erases. The identify sent right after the erase answered, to
    the server that had just checked, must be dropped, not start a new profile."""
    settings.SUPPRESSION_CHECK_SECONDS = 3.0
    write_key = (source.write_key, "")
    identify = {"userId": "ann", "traits": {"email": "ann@example.com"}}
    with web_server(DJANGO_SETTINGS_MODULE="tests.profiles.suppression_cache_settings") as (ingesting, _):
        assert _post(ingesting, "/v1/identify", identify, auth=write_key).status_code == 200
        ann = customer_find(kind="email", value="ann@example.com")
        assert ann is not None
        erased = client.post(
            f"/api/v1/customers/{ann.id}/erase",
            {"suppress": True, "reason": "GDPR art. 17 request"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api_token.secret}",
        )
        assert erased.status_code == 200, erased.content
        again = {"anonymousId": "new-phone", "traits": {"email": "ann@example.com"}}
        assert _post(ingesting, "/v1/identify", again, auth=write_key).status_code == 200
    assert customer_find(kind="email", value="ann@example.com") is None
    assert not Customer.objects.exists()


# --- Undo's rules, pure -------------------------------------------------------------------


def test_an_undo_takes_a_windowed_count_back_day_by_day() -> None:
    orders = computed.Definition(name="orders", kind="count", event_name="Order Completed", window_days=30)
    current = {"days": {"2026-11-01": 3, "2026-11-02": 1}}
    taken = {"days": {"2026-11-01": 2, "2026-10-01": 4}}
    assert computed.unmerge_state(orders, current, taken, {"days": {"2026-11-01": 1}}) == {
        "days": {"2026-11-01": 1, "2026-11-02": 1}
    }


def test_an_undo_gives_a_last_seen_back_only_if_it_is_the_merged_profiles() -> None:
    seen = computed.Definition(name="seen", kind="last_seen", event_name="Page Viewed")
    own, theirs, later = {"at": "2026-11-01"}, {"at": "2026-11-02"}, {"at": "2026-11-03"}
    assert computed.unmerge_state(seen, theirs, theirs, own) == own
    assert computed.unmerge_state(seen, later, theirs, own) == later


def test_an_undo_drops_the_once_keys_only_the_merged_profile_brought() -> None:
    survivor: identity_rules.TraitState = ({"plan": "free"}, {"plan": "t1"}, ["signup"])
    loser: identity_rules.TraitState = ({"first_seen_on": "ios"}, {"first_seen_on": "t2"}, ["first_seen_on"])
    merged = identity_rules.merge_traits([survivor, loser])
    taken = identity_rules.traits_taken(survivor, loser, merged)
    assert taken == {"first_seen_on": None}
    assert identity_rules.unmerge_traits(merged, loser, taken, survivor[2]) == survivor
