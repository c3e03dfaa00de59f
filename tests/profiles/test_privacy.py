"""Export and erase: everything held about a person comes out, and an erase leaves nothing
behind but keyed hashes and the audit trail."""

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from io import StringIO
from typing import Any
from uuid import UUID

import orjson
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client

from orchestration.routing import route
from profiles import contracts
from profiles.merging import customer_merge
from profiles.models import Customer, Event, QuarantinedMessage
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.models import Erasure, ErasureTombstone, PrivacyAudit
from profiles.privacy.selectors import suppressed_identities
from profiles.privacy.services import consent_set, customer_erase, suppression_lift
from profiles.selectors import customer_find
from tests.factories import CustomerFactory, IdentityFactory, QuarantinedMessageFactory, SessionFactory

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EMAIL = "erase.me@example.com"
USER_ID = "user-erase-me"
ANONYMOUS_ID = "anon-erase-me"
SECOND_ANONYMOUS_ID = "anon-erase-me-too"
PHONE = "+442079460999"
# Tables that keep an erased customer's id by design: the audit trail and the erasure record.
KEEPS_THE_ID = {"profiles_privacyaudit", "profiles_erasure", "profiles_erasedcustomer"}


@pytest.fixture
def post(api_token: Any, client: Client) -> Callable[..., Any]:
    def send(path: str, body: Any) -> Any:
        return client.post(
            path, orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}"
        )

    return send


@pytest.fixture
def person(ingest: Any) -> Customer:
    """A person with everything: events on two profiles merged into one, identities of every
    kind, consent from an event and from the API, a session, a quarantined message, a refused
    merge."""
    ingest.post("page", {"anonymousId": ANONYMOUS_ID, "name": "Home", "timestamp": "2026-11-01T10:00:00Z"})
    ingest.post(
        "identify",
        {
            "anonymousId": ANONYMOUS_ID,
            "userId": USER_ID,
            "traits": {"email": EMAIL, "phone": PHONE, "name": "Erase Me"},
            "context": {"consent": {"marketing": {"email": True}}},
            "timestamp": "2026-11-01T10:01:00Z",
        },
    )
    ingest.post("track", {"userId": USER_ID, "event": "Order Completed", "properties": {"total": 42}})
    ingest.post("track", {"anonymousId": SECOND_ANONYMOUS_ID, "event": "Viewed"})
    ingest.post("track", {"userId": USER_ID, "properties": {"no": "event name"}})  # quarantined
    route(list(Event.objects.values_list("id", flat=True)))
    customer = customer_find(kind="user_id", value=USER_ID)
    second = customer_find(kind="anonymous_id", value=SECOND_ANONYMOUS_ID)
    assert customer is not None and second is not None and customer.id != second.id
    assert customer_merge(customer_ids=[customer.id, second.id], reason="same person", actor="test").survivor_id
    customer = customer_find(kind="user_id", value=USER_ID)
    assert customer is not None
    other = CustomerFactory.create()
    IdentityFactory(customer=other, kind="user_id", value="someone-else")
    assert customer_merge(customer_ids=[customer.id, other.id], reason="test", actor="test").refused
    consent_set(
        customer_id=customer.id,
        choices=[ConsentChoice("marketing", "sms", "denied")],
        origin="api",
        actor="token:test",
        changed_at=T0,
    )
    SessionFactory(customer=customer, channel="web", device="phone", started_at=T0)
    assert QuarantinedMessage.objects.filter(raw__userId=USER_ID).exists()
    return customer


def _tables_mentioning(text: str) -> set[str]:
    """Every table with a row whose text form contains `text`: a whole-database check that
    finds leftovers in tables nobody thought of."""
    found = set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT 1 FROM "{table}" AS r WHERE r::text ILIKE %s LIMIT 1', [f"%{text}%"])
            if cursor.fetchone():
                found.add(table)
    return found


def _export(client: Client, api_token: Any, customer_id: UUID) -> dict[str, Any]:
    response = client.get(f"/api/v1/customers/{customer_id}/export", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}")
    assert response.status_code == 200
    chunks = response.streaming_content  # type: ignore[attr-defined]
    return orjson.loads(b"".join(chunks))


# --- Export -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_holds_every_section(person: Customer, client: Client, api_token: Any) -> None:
    document = _export(client, api_token, person.id)
    assert set(document) == {
        "format",
        "generated_at",
        "customer",
        "merged_profiles",
        "identities",
        "consent",
        "merges",
        "sessions",
        "deliveries",
        "privacy_requests",
        "events",
    }


@pytest.mark.django_db
def test_export_holds_the_profile_identities_and_merged_profile(
    person: Customer, client: Client, api_token: Any
) -> None:
    document = _export(client, api_token, person.id)
    assert document["customer"]["id"] == str(person.id)
    assert document["customer"]["traits"]["name"] == "Erase Me"
    assert {(i["kind"], i["value"]) for i in document["identities"]} == {
        ("user_id", USER_ID),
        ("anonymous_id", ANONYMOUS_ID),
        ("anonymous_id", SECOND_ANONYMOUS_ID),
        ("email", EMAIL),
        ("phone", PHONE),
    }
    assert len(document["merged_profiles"]) == 1
    assert document["merges"][0]["reason"] == "same person"


@pytest.mark.django_db
def test_export_holds_every_event_oldest_first(person: Customer, client: Client, api_token: Any) -> None:
    document = _export(client, api_token, person.id)
    events = document["events"]
    assert len(events) == Event.objects.filter(customer=person).count()
    assert {"page", "identify", "track"} <= {e["type"] for e in events}
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert {"properties", "context", "message_id", "received_at"} <= set(events[0])


@pytest.mark.django_db
def test_export_holds_consent_current_and_history(person: Customer, client: Client, api_token: Any) -> None:
    consent = _export(client, api_token, person.id)["consent"]
    assert {(c["purpose"], c["channel"], c["status"]) for c in consent["current"]} == {
        ("marketing", "email", "granted"),
        ("marketing", "sms", "denied"),
    }
    assert {h["origin"] for h in consent["history"]} == {"context", "api"}


@pytest.mark.django_db
def test_export_holds_sessions_and_what_other_apps_register(
    person: Customer, client: Client, api_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers = {**contracts.export_providers(), "deliveries": [lambda ids: [{"message": "hello"}]]}
    monkeypatch.setattr(contracts, "_export_providers", providers)
    document = _export(client, api_token, person.id)
    assert document["deliveries"] == [{"message": "hello"}]
    # Orchestration's session records, exported by its provider: the one started on a phone, and
    # the two that routing derived from the events of the two profiles before they merged.
    assert sorted(s["device"] for s in document["sessions"]) == ["", "", "phone"]


@pytest.mark.django_db
def test_export_streams_large_profiles_in_chunks(client: Client, api_token: Any, ingest: Any) -> None:
    batch = [{"type": "track", "userId": "big", "event": "E", "properties": {"pad": "x" * 500}} for _ in range(300)]
    ingest.post("batch", {"batch": batch})
    customer = customer_find(kind="user_id", value="big")
    assert customer is not None
    response = client.get(f"/api/v1/customers/{customer.id}/export", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}")
    chunks = list(response.streaming_content)  # type: ignore[attr-defined]
    assert len(chunks) > 2
    assert len(orjson.loads(b"".join(chunks))["events"]) == 300


@pytest.mark.django_db
def test_export_is_audited_under_the_token(person: Customer, client: Client, api_token: Any) -> None:
    _export(client, api_token, person.id)
    audit = PrivacyAudit.objects.get(action="export")
    assert (audit.actor, audit.customer_id) == (f"token:{api_token.name}", person.id)


@pytest.mark.django_db
def test_export_of_an_unknown_customer_is_a_404(api: Any) -> None:
    assert api("/api/v1/customers/00000000-0000-0000-0000-000000000000/export").status_code == 404


# --- Erase ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_erase_leaves_no_table_holding_the_customer_id(person: Customer, post: Any) -> None:
    merged_ids = [str(c) for c in Customer.objects.filter(merged_into=person).values_list("id", flat=True)]
    assert post(f"/api/v1/customers/{person.id}/erase", {"suppress": True}).status_code == 200
    assert [_tables_mentioning(str(cid)) - KEEPS_THE_ID for cid in [str(person.id), *merged_ids]] == [set(), set()]


@pytest.mark.django_db
@pytest.mark.parametrize("identifier", [EMAIL, USER_ID, ANONYMOUS_ID, SECOND_ANONYMOUS_ID, PHONE, "Erase Me"])
def test_erase_leaves_no_table_holding_an_identifier(person: Customer, post: Any, identifier: str) -> None:
    post(f"/api/v1/customers/{person.id}/erase", {"suppress": True, "reason": "GDPR art. 17 request"})
    assert _tables_mentioning(identifier) == set()


@pytest.mark.django_db
def test_erase_answers_what_it_deleted(person: Customer, post: Any) -> None:
    events = Event.objects.filter(customer=person).count()
    body = post(f"/api/v1/customers/{person.id}/erase", {"suppress": False}).json()
    assert len(body["erased_customer_ids"]) == 2
    assert body["deleted"]["profiles.Event"] == events
    assert body["deleted"]["profiles.Customer"] == 2
    assert body["deleted"]["tombstones"] == 5
    assert body["deleted"]["profiles.QuarantinedMessage"] == 1


@pytest.mark.django_db
def test_erasing_twice_answers_the_same(person: Customer, post: Any) -> None:
    first = post(f"/api/v1/customers/{person.id}/erase", {"suppress": True})
    second = post(f"/api/v1/customers/{person.id}/erase", {"suppress": False})
    assert (second.status_code, second.json()) == (200, first.json())


@pytest.mark.django_db
def test_erasing_by_a_merged_profile_id_answers_the_same(person: Customer, post: Any) -> None:
    merged_id = Customer.objects.filter(merged_into=person).values_list("id", flat=True).get()
    first = post(f"/api/v1/customers/{person.id}/erase", {})
    assert post(f"/api/v1/customers/{merged_id}/erase", {}).json() == first.json()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_erases_of_one_person_answer_with_one_erasure() -> None:
    customer = CustomerFactory.create()
    IdentityFactory(customer=customer, kind="email", value=EMAIL)
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def erase() -> None:
        barrier.wait()
        try:
            answers.append(customer_erase(customer_id=customer.id, suppress=True, reason="", actor="test").id)
        finally:
            connection.close()

    threads = [threading.Thread(target=erase) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 2
    assert len(set(answers)) == 1
    assert Erasure.objects.count() == 1


@pytest.mark.django_db
def test_erasing_an_unknown_customer_is_a_404(post: Any) -> None:
    response = post("/api/v1/customers/00000000-0000-0000-0000-000000000000/erase", {})
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.django_db
def test_erase_with_a_bad_body_is_a_400(person: Customer, post: Any) -> None:
    response = post(f"/api/v1/customers/{person.id}/erase", {"suppress": "perhaps"})
    assert response.status_code == 400
    assert Customer.objects.filter(id=person.id).exists()


@pytest.mark.django_db
def test_erase_is_audited_under_the_token_without_identifiers(person: Customer, post: Any, api_token: Any) -> None:
    post(f"/api/v1/customers/{person.id}/erase", {"suppress": True})
    audit = PrivacyAudit.objects.get(action="erase")
    assert (audit.actor, audit.customer_id, audit.detail["suppress"]) == (f"token:{api_token.name}", person.id, True)


@pytest.mark.django_db
def test_a_repeated_erase_is_audited_too(person: Customer, post: Any) -> None:
    post(f"/api/v1/customers/{person.id}/erase", {})
    post(f"/api/v1/customers/{person.id}/erase", {})
    assert [a.detail.get("repeat", False) for a in PrivacyAudit.objects.filter(action="erase").order_by("id")] == [
        False,
        True,
    ]


# --- Suppression ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_identities_of_a_person_erased_with_suppression_are_suppressed(person: Customer) -> None:
    customer_erase(customer_id=person.id, suppress=True, reason="", actor="test")
    keys = {("email", EMAIL), ("user_id", USER_ID), ("user_id", "a-stranger"), ("anonymous_id", SECOND_ANONYMOUS_ID)}
    assert suppressed_identities(keys) == {
        ("email", EMAIL),
        ("user_id", USER_ID),
        ("anonymous_id", SECOND_ANONYMOUS_ID),
    }


@pytest.mark.django_db
def test_an_erase_without_suppression_suppresses_nothing(person: Customer) -> None:
    customer_erase(customer_id=person.id, suppress=False, reason="", actor="test")
    assert suppressed_identities({("email", EMAIL), ("user_id", USER_ID)}) == set()


@pytest.mark.django_db
def test_suppression_checks_a_whole_batch_in_one_query(person: Customer, django_assert_num_queries: Any) -> None:
    customer_erase(customer_id=person.id, suppress=True, reason="", actor="test")
    keys = {("anonymous_id", f"visitor-{i}") for i in range(2500)} | {("email", EMAIL)}
    with django_assert_num_queries(1):
        assert suppressed_identities(keys) == {("email", EMAIL)}


@pytest.mark.django_db
def test_tombstones_hold_keyed_hashes_not_identifiers(person: Customer) -> None:
    customer_erase(customer_id=person.id, suppress=True, reason="", actor="test")
    hashes = list(ErasureTombstone.objects.values_list("key_hash", flat=True))
    assert len(hashes) == 5
    assert all(len(h) == 64 and EMAIL not in h for h in hashes)


@pytest.mark.django_db
def test_a_later_erase_without_suppression_keeps_an_earlier_suppression(person: Customer) -> None:
    customer_erase(customer_id=person.id, suppress=True, reason="", actor="test")
    comeback = CustomerFactory.create()
    IdentityFactory(customer=comeback, kind="email", value=EMAIL)
    customer_erase(customer_id=comeback.id, suppress=False, reason="", actor="test")
    assert suppressed_identities({("email", EMAIL)}) == {("email", EMAIL)}


@pytest.mark.django_db
def test_lifting_a_suppression_is_audited(person: Customer) -> None:
    customer_erase(customer_id=person.id, suppress=True, reason="", actor="test")
    assert suppression_lift(kind="email", value=EMAIL.upper(), actor="admin:dpo") is True
    assert suppressed_identities({("email", EMAIL)}) == set()
    assert PrivacyAudit.objects.filter(action="suppression_lift", actor="admin:dpo", customer_id=person.id).exists()


# --- The command and the admin ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_erases_and_is_audited_as_a_command(person: Customer) -> None:
    out = StringIO()
    call_command("erase_customer", str(person.id), "--suppress", "--reason", "ticket 42", stdout=out)
    erasure = Erasure.objects.get()
    assert (erasure.suppress, erasure.reason, erasure.actor.startswith("command:")) == (True, "ticket 42", True)
    assert f"Erasure {erasure.id}" in out.getvalue()


@pytest.mark.django_db
def test_the_admin_action_asks_then_erases_and_is_audited(person: Customer, admin_client: Client) -> None:
    data = {"action": "erase_customers", "_selected_action": [str(person.id)]}
    confirmation = admin_client.post("/admin/profiles/customer/", data)
    assert b"Suppress later events" in confirmation.content
    assert Customer.objects.filter(id=person.id).exists()
    admin_client.post("/admin/profiles/customer/", {**data, "confirm": "yes", "suppress": "on", "reason": "asked"})
    audit = PrivacyAudit.objects.get(action="erase")
    assert (audit.actor, audit.customer_id, audit.detail["suppress"]) == ("admin:admin", person.id, True)


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def test_redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


def _redis_mentions(client: redis.Redis, text: str) -> list[bytes]:
    """Keys whose name or value (strings, hashes, sets, sorted sets) contains `text`."""
    found = []
    needle = text.encode()
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values: list[Any] = []
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = list(client.hgetall(key).values())
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = list(client.zrange(key, 0, -1))
        if needle in key or any(needle in value for value in values):
            found.append(key)
    return found


@pytest.mark.django_db(transaction=True)
def test_erase_leaves_nothing_in_redis(ingest: Any, test_redis_db: redis.Redis) -> None:
    ingest.post("track", {"userId": USER_ID, "event": "Viewed"})
    route(list(Event.objects.values_list("id", flat=True)))
    customer = customer_find(kind="user_id", value=USER_ID)
    assert customer is not None
    assert _redis_mentions(test_redis_db, str(customer.id))
    customer_erase(customer_id=customer.id, suppress=True, reason="", actor="test")
    assert _redis_mentions(test_redis_db, str(customer.id)) == []


@pytest.mark.django_db
def test_erase_deletes_quarantined_messages_sent_with_the_persons_phone_in_any_format(
    person: Customer, post: Any
) -> None:
    formats: list[dict[str, Any]] = [
        {"traits": {"phone": "+44 20 7946 0999"}},
        {"context": {"traits": {"phone": "+44-20-7946-0999"}}},
    ]
    for fields in formats:
        QuarantinedMessageFactory.create(raw={"type": "identify", **fields})
    someone_else = QuarantinedMessageFactory.create(raw={"type": "identify", "traits": {"phone": "+44 20 7946 0000"}})
    body = post(f"/api/v1/customers/{person.id}/erase", {"suppress": False}).json()
    assert body["deleted"]["profiles.QuarantinedMessage"] == 1 + len(formats)
    assert list(QuarantinedMessage.objects.values_list("id", flat=True)) == [someone_else.id]
