"""Consent: set through the API, identify traits, event context and webhooks; history kept;
the current state is the latest choice; delivery's send-time check."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from django.db import transaction
from django.test import Client

from orchestration.routing import route
from profiles.merging import customer_merge
from profiles.models import Event
from profiles.privacy.conventions import ConsentChoice, choices_from
from profiles.privacy.models import ConsentChange, ConsentOrigin, PrivacyAudit
from profiles.privacy.selectors import consent_allows, consent_allows_many
from profiles.privacy.services import consent_apply_events, consent_set
from profiles.selectors import customer_find
from profiles.services import outbox_claim
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def post(api_token: Any, client: Client) -> Callable[..., Any]:
    def send(path: str, body: Any) -> Any:
        return client.post(
            path, orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}"
        )

    return send


def _routed(ingest: Any, call: str, body: dict[str, Any]) -> UUID:
    """Ingest one message, route it, and return its customer's id."""
    assert ingest.post(call, body).status_code == 200
    route(list(Event.objects.values_list("id", flat=True)))
    customer = customer_find(kind="user_id", value=body["userId"])
    assert customer is not None
    return customer.id


def _set(customer_id: UUID, purpose: str, channel: str, status: str, at: datetime, origin: str = "api") -> None:
    consent_set(
        customer_id=customer_id,
        choices=[ConsentChoice(purpose, channel, status)],
        origin=origin,
        actor="token:test",
        changed_at=at,
    )


# --- The event conventions (pure) -------------------------------------------------------------


def test_nested_purpose_channel_status_is_read() -> None:
    assert choices_from({"marketing": {"email": "granted", "SMS": False}}) == [
        ConsentChoice("marketing", "email", "granted"),
        ConsentChoice("marketing", "sms", "denied"),
    ]


def test_a_purpose_with_a_bare_status_covers_every_channel() -> None:
    assert choices_from({"analytics": True}) == [ConsentChoice("analytics", "*", "granted")]


def test_segment_category_preferences_cover_every_channel() -> None:
    payload = {"categoryPreferences": {"Advertising": True, "DataSharing": False}, "destinationPreferences": {}}
    assert choices_from(payload) == [
        ConsentChoice("advertising", "*", "granted"),
        ConsentChoice("datasharing", "*", "denied"),
    ]


def test_unreadable_entries_are_skipped() -> None:
    payload = {"marketing": {"email": "maybe", "9bad": True}, "": True, "ok": "DENIED", "list": [1]}
    assert choices_from(payload) == [ConsentChoice("ok", "*", "denied")]


# --- Through the management API ---------------------------------------------------------------


def test_api_change_becomes_current_and_is_in_history(post: Any, api: Any) -> None:
    customer = CustomerFactory.create()
    body = {"consents": [{"purpose": "marketing", "channel": "email", "status": "granted"}], "source": "signup-form"}
    response = post(f"/api/v1/customers/{customer.id}/consent", body)
    assert response.status_code == 200, response.content
    consent = api(f"/api/v1/customers/{customer.id}/consent").json()
    assert [(c["purpose"], c["channel"], c["status"], c["origin"]) for c in consent["current"]] == [
        ("marketing", "email", "granted", "api")
    ]
    assert consent["history"][0]["source_label"] == "signup-form"


def test_history_keeps_every_change_newest_first(post: Any, api: Any) -> None:
    customer = CustomerFactory.create()
    for day, status in [(1, "granted"), (2, "denied"), (3, "granted")]:
        post(
            f"/api/v1/customers/{customer.id}/consent",
            {
                "consents": [{"purpose": "marketing", "channel": "sms", "status": status}],
                "changed_at": f"2026-11-0{day}T12:00:00Z",
            },
        )
    history = api(f"/api/v1/customers/{customer.id}/consent").json()["history"]
    assert [(h["status"], h["changed_at"]) for h in history] == [
        ("granted", "2026-11-03T12:00:00Z"),
        ("denied", "2026-11-02T12:00:00Z"),
        ("granted", "2026-11-01T12:00:00Z"),
    ]


def test_an_older_choice_arriving_late_is_history_but_not_current(api: Any) -> None:
    customer = CustomerFactory.create()
    _set(customer.id, "marketing", "email", "denied", T0)
    _set(customer.id, "marketing", "email", "granted", T0 - timedelta(days=1))
    consent = api(f"/api/v1/customers/{customer.id}/consent").json()
    assert consent["current"][0]["status"] == "denied"
    assert [h["applied"] for h in consent["history"]] == [True, False]


def test_api_consent_change_is_audited_under_the_token(post: Any, api_token: Any) -> None:
    customer = CustomerFactory.create()
    post(
        f"/api/v1/customers/{customer.id}/consent",
        {"consents": [{"purpose": "marketing", "channel": "email", "status": "denied"}]},
    )
    audit = PrivacyAudit.objects.get()
    assert (audit.action, audit.actor, audit.customer_id) == ("consent_set", f"token:{api_token.name}", customer.id)
    assert audit.detail["changes"] == [{"purpose": "marketing", "channel": "email", "status": "denied"}]


@pytest.mark.parametrize(
    "body",
    [
        {"consents": []},
        {"consents": [{"purpose": "marketing", "channel": "email", "status": "maybe"}]},
        {"consents": [{"purpose": "9 lives", "channel": "email", "status": "granted"}]},
        {"consents": [{"purpose": "marketing", "channel": "e/mail", "status": "granted"}]},
        {"consents": "marketing"},
        {
            "consents": [{"purpose": "marketing", "channel": "email", "status": "granted"}],
            "changed_at": "2999-01-01T00:00:00Z",
        },
        {"consents": [{"purpose": "marketing", "channel": "email", "status": "granted"}] * 101},
    ],
)
def test_bad_consent_input_is_a_400_and_records_nothing(post: Any, body: Any) -> None:
    customer = CustomerFactory.create()
    response = post(f"/api/v1/customers/{customer.id}/consent", body)
    assert response.status_code == 400, response.content
    assert ConsentChange.objects.count() == 0


def test_consent_of_an_unknown_customer_is_a_404(post: Any) -> None:
    response = post(
        "/api/v1/customers/00000000-0000-0000-0000-000000000000/consent",
        {"consents": [{"purpose": "marketing", "channel": "email", "status": "granted"}]},
    )
    assert response.status_code == 404


# --- Through events ---------------------------------------------------------------------------


def test_identify_context_consent_is_recorded_when_routed(ingest: Any) -> None:
    customer_id = _routed(
        ingest,
        "identify",
        {"userId": "u1", "timestamp": "2026-11-01T10:00:00Z", "context": {"consent": {"marketing": {"email": True}}}},
    )
    change = ConsentChange.objects.get(customer_id=customer_id)
    assert (change.purpose, change.channel, change.status, change.origin) == (
        "marketing",
        "email",
        "granted",
        "context",
    )
    assert change.changed_at == datetime(2026, 11, 1, 10, tzinfo=UTC)


def test_identify_consent_trait_is_recorded_when_routed(ingest: Any) -> None:
    customer_id = _routed(ingest, "identify", {"userId": "u1", "traits": {"consent": {"marketing": {"sms": "denied"}}}})
    change = ConsentChange.objects.get(customer_id=customer_id)
    assert (change.purpose, change.channel, change.status, change.origin) == (
        "marketing",
        "sms",
        "denied",
        ConsentOrigin.IDENTIFY_TRAIT,
    )


def test_segment_consent_object_on_a_track_is_recorded(ingest: Any) -> None:
    customer_id = _routed(
        ingest,
        "track",
        {"userId": "u1", "event": "Viewed", "context": {"consent": {"categoryPreferences": {"Analytics": False}}}},
    )
    assert consent_allows(customer_id=customer_id, purpose="analytics", channel="web") is False


def test_the_same_consent_sent_on_every_event_is_one_history_row(ingest: Any) -> None:
    consent = {"consent": {"categoryPreferences": {"Analytics": True}}}
    batch = [
        {"type": "track", "userId": "u1", "event": f"E{i}", "timestamp": f"2026-11-0{i}T00:00:00Z", "context": consent}
        for i in range(1, 6)
    ]
    ingest.post("batch", {"batch": batch})
    route(list(Event.objects.values_list("id", flat=True)))
    assert ConsentChange.objects.count() == 1


def test_routing_the_same_events_twice_records_consent_once(ingest: Any) -> None:
    _routed(ingest, "identify", {"userId": "u1", "context": {"consent": {"marketing": {"email": True}}}})
    ids = list(Event.objects.values_list("id", flat=True))
    route(ids)
    assert ConsentChange.objects.count() == 1


def test_events_without_consent_record_nothing(ingest: Any) -> None:
    _routed(ingest, "identify", {"userId": "u1", "traits": {"plan": "pro"}})
    assert ConsentChange.objects.count() == 0


def test_the_claim_says_which_events_carry_consent(ingest: Any) -> None:
    sent = [
        {"type": "track", "userId": "u1", "event": "A", "context": {"consent": {"marketing": {"email": True}}}},
        {"type": "identify", "userId": "u1", "traits": {"consent": {"marketing": {"sms": "denied"}}}},
        {"type": "track", "userId": "u1", "event": "B", "properties": {"consent": {"marketing": True}}},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
    ]
    assert ingest.post("batch", {"batch": sent}).status_code == 200
    with transaction.atomic():
        claimed = outbox_claim(event_ids=list(Event.objects.order_by("id").values_list("id", flat=True)))
    # A track's `consent` property is the track's own business; only context and identify traits count.
    assert [event.consent for event in claimed] == [True, True, False, False]


def test_a_chunk_that_carries_no_consent_costs_the_handler_no_query(
    ingest: Any, django_assert_num_queries: Any
) -> None:
    assert ingest.post("track", {"userId": "u1", "event": "A", "properties": {"consent": True}}).status_code == 200
    with transaction.atomic():
        claimed = outbox_claim(event_ids=list(Event.objects.values_list("id", flat=True)))
    with django_assert_num_queries(0):
        consent_apply_events(claimed)


def test_webhook_changes_are_history_even_when_repeated() -> None:
    customer = CustomerFactory.create()
    for hours in (1, 2):
        _set(customer.id, "marketing", "sms", "denied", T0 + timedelta(hours=hours), origin="webhook")
    assert ConsentChange.objects.filter(origin="webhook").count() == 2


# --- Send-time checks -------------------------------------------------------------------------


def test_a_channel_choice_wins_over_a_later_every_channel_choice() -> None:
    customer = CustomerFactory.create()
    _set(customer.id, "marketing", "sms", "denied", T0)
    _set(customer.id, "marketing", "*", "granted", T0 + timedelta(days=1))
    assert consent_allows_many(customer_ids=[customer.id], purpose="marketing", channel="sms") == {customer.id: False}


def test_an_every_channel_choice_applies_to_channels_without_their_own() -> None:
    customer = CustomerFactory.create()
    _set(customer.id, "marketing", "*", "granted", T0)
    assert consent_allows(customer_id=customer.id, purpose="marketing", channel="push") is True


@pytest.mark.parametrize(("purpose", "allowed"), [("transactional", True), ("marketing", False), ("analytics", False)])
def test_without_a_choice_the_purpose_default_applies(purpose: str, allowed: bool) -> None:
    customer = CustomerFactory.create()
    assert consent_allows(customer_id=customer.id, purpose=purpose, channel="email") is allowed


def test_an_unknown_customer_is_allowed_nothing() -> None:
    unknown = UUID(int=1)
    assert consent_allows(customer_id=unknown, purpose="transactional", channel="email") is False


def test_the_batch_check_answers_many_customers_in_two_queries(django_assert_num_queries: Any) -> None:
    customers = [CustomerFactory.create() for _ in range(20)]
    for customer in customers[:10]:
        _set(customer.id, "marketing", "email", "granted", T0)
    with django_assert_num_queries(2):
        answer = consent_allows_many(customer_ids=[c.id for c in customers], purpose="marketing", channel="email")
    assert sum(answer.values()) == 10


def test_consent_given_on_a_merged_profile_holds_for_the_survivor() -> None:
    older, newer = CustomerFactory.create(), CustomerFactory.create()
    _set(newer.id, "marketing", "email", "granted", T0)
    outcome = customer_merge(customer_ids=[older.id, newer.id], reason="test", actor="token:test")
    assert outcome.survivor_id == older.id
    assert consent_allows(customer_id=older.id, purpose="marketing", channel="email") is True
