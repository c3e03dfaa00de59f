"""The journeys management API: simulate (no rows written), publish and preview, API-triggered
enrollments, and the explanations of a customer's journeys."""

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from channels.services.contact_policy import contact_policy_set
from journeys import demo
from journeys.models import Enrollment, JourneyVersion
from journeys.services import journey_create, timers_tick, version_create_draft
from profiles.models import Customer
from tests.factories import CustomerFactory
from tests.journeys.engine_support import fresh_contact_policy, identify, providers, publish, send

pytestmark = pytest.mark.django_db
__all__ = ["fresh_contact_policy", "providers"]

T0 = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
API: dict[str, Any] = {
    "trigger": {"type": "api"},
    "entry": {"reentry": "once"},
    "start": "check",
    "steps": {
        "check": {
            "type": "branch",
            "branches": [{"condition": {"field": "traits.vip", "op": "equals", "value": True}, "next": "premium"}],
            "default": "pause",
        },
        "premium": {"type": "route", "destination": "premium_support"},
        "pause": {"type": "wait", "duration": {"hours": 1}, "next": "done"},
        "done": {"type": "exit"},
    },
}


@pytest.fixture
def call(api_token: Any, client: Client) -> Callable[..., Any]:
    def send_request(method: str, path: str, body: Any = None) -> Any:
        auth = f"Bearer {api_token.secret}"
        if method == "get":
            return client.get(path, HTTP_AUTHORIZATION=auth)
        return client.post(path, data=body or {}, content_type="application/json", HTTP_AUTHORIZATION=auth)

    return send_request


def _row_counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def test_simulate_answers_the_path_and_messages_and_writes_no_rows(call: Callable[..., Any]) -> None:
    version = journey_create(key="abandoned-cart", name="Cart", definition=demo.ABANDONED_CART)
    before = _row_counts()
    response = call(
        "post",
        f"/api/v1/journeys/{version.journey_id}/versions/1/simulate",
        {
            "profile": {"traits": {"first_name": "Ada"}},
            "events": [{"event": "Cart Abandoned", "at": T0.isoformat(), "properties": {"item_count": 1}}],
            "start_at": T0.isoformat(),
            "until": (T0 + timedelta(hours=3)).isoformat(),
            "outcomes": {"push": "failed"},
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [m["channel"] for m in body["messages"]] == ["push", "sms"]
    assert body["timers"][0]["kind"] == "event_timeout"
    assert body["enrollments"][0]["status"] == "completed"
    assert _row_counts() == before


def test_simulate_refuses_an_invalid_draft_with_paths(call: Callable[..., Any]) -> None:
    broken = {**API, "start": "nowhere"}
    version = journey_create(key="broken", name="Broken", definition=broken)
    response = call(
        "post",
        f"/api/v1/journeys/{version.journey_id}/versions/1/simulate",
        {"start_at": T0.isoformat(), "until": T0.isoformat()},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_definition"
    assert response.json()["errors"][0]["path"] == "/start"


def test_simulate_refuses_until_before_start(call: Callable[..., Any]) -> None:
    version = journey_create(key="x", name="X", definition=API)
    response = call(
        "post",
        f"/api/v1/journeys/{version.journey_id}/versions/1/simulate",
        {"start_at": T0.isoformat(), "until": (T0 - timedelta(hours=1)).isoformat()},
    )
    assert response.status_code == 400
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"profile": {"traits": ["not", "an", "object"]}}, "/profile/traits"),
        ({"profile": {"segments": "vip"}}, "/profile/segments"),
        ({"profile": {"contact": {"sms": "quiet"}}}, "/profile/contact/sms"),
        ({"events": [{"event": "X", "at": T0.isoformat(), "properties": [1, 2]}]}, "/events/0/properties"),
        ({"events": [{"event": "X", "at": "yesterday"}]}, "/events/0/at"),
    ],
)
def test_simulate_answers_bad_input_with_400_and_a_path(
    call: Callable[..., Any], body: dict[str, Any], path: str
) -> None:
    version = journey_create(key="x", name="X", definition=API)
    response = call(
        "post",
        f"/api/v1/journeys/{version.journey_id}/versions/1/simulate",
        {"start_at": T0.isoformat(), "until": T0.isoformat(), **body},
    )
    assert response.status_code == 400, response.content
    assert response.json()["path"] == path


def test_publish_and_preview(call: Callable[..., Any]) -> None:
    v1 = publish(API, key="api")
    customer = CustomerFactory.create()
    assert (
        call("post", f"/api/v1/journeys/{v1.journey_id}/enrollments", {"customer_id": str(customer.id)}).status_code
        == 201
    )
    definition = copy.deepcopy(API)
    definition["steps"]["pause2"] = {"type": "wait", "duration": {"hours": 2}, "next": "done"}
    definition["steps"]["check"]["default"] = "pause2"
    del definition["steps"]["pause"]
    v2 = version_create_draft(journey=v1.journey, definition=definition)
    preview = call(
        "post", f"/api/v1/journeys/{v1.journey_id}/versions/2/preview", {"migration_map": {"pause": "pause2"}}
    )
    assert preview.status_code == 200
    assert preview.json()["moves"] == [{"from": "pause", "to": "pause2", "count": 1}]
    published = call(
        "post", f"/api/v1/journeys/{v1.journey_id}/versions/2/publish", {"migration_map": {"pause": "pause2"}}
    )
    assert published.status_code == 200, published.content
    assert Enrollment.objects.get().step == "pause2"
    assert JourneyVersion.objects.get(id=v2.id).status == "published"
    again = call("post", f"/api/v1/journeys/{v1.journey_id}/versions/2/publish", {})
    assert again.status_code == 409
    assert again.json()["code"] == "version_not_draft"


def test_publish_refuses_a_bad_map(call: Callable[..., Any]) -> None:
    v1 = publish(API, key="api")
    version_create_draft(journey=v1.journey, definition=API)
    response = call("post", f"/api/v1/journeys/{v1.journey_id}/versions/2/publish", {"migration_map": {"nope": "done"}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/migration_map/nope"


def test_enrollment_api_and_reentry(call: Callable[..., Any]) -> None:
    v1 = publish(API, key="api")
    customer = CustomerFactory.create()
    first = call("post", f"/api/v1/journeys/{v1.journey_id}/enrollments", {"customer_id": str(customer.id)})
    assert first.status_code == 201
    assert first.json()["step"] == "pause"
    assert [run["step"] for run in first.json()["history"]] == ["check", "pause"]
    second = call("post", f"/api/v1/journeys/{v1.journey_id}/enrollments", {"customer_id": str(customer.id)})
    assert (second.status_code, second.json()["code"]) == (409, "reentry_refused")
    unknown = call(
        "post", f"/api/v1/journeys/{v1.journey_id}/enrollments", {"customer_id": "8b0b6e8e-0000-4000-8000-000000000000"}
    )
    assert unknown.status_code == 404


def test_enrollment_detail_explains_the_branch(call: Callable[..., Any], ingest: Any) -> None:
    v1 = publish(API, key="api")
    identify(ingest, "u1", vip=True)
    customer = Customer.objects.get(identities__value="u1")
    created = call("post", f"/api/v1/journeys/{v1.journey_id}/enrollments", {"customer_id": str(customer.id)}).json()
    detail = call("get", f"/api/v1/enrollments/{created['id']}")
    assert detail.status_code == 200
    branch = detail.json()["history"][0]
    assert branch["detail"]["chosen"] == "premium"
    assert branch["detail"]["branches"][0]["explain"]["saw"] is True
    assert call("get", "/api/v1/enrollments/8b0b6e8e-0000-4000-8000-000000000000").status_code == 404


def test_customer_journeys_say_why_a_message_was_held(call: Callable[..., Any], ingest: Any, providers: None) -> None:
    contact_policy_set(caps=[{"purpose": "marketing", "channel": "*", "max": 0, "window": {"days": 1}}])
    publish(demo.ABANDONED_CART, key="abandoned-cart")
    identify(ingest, "u1")
    send(ingest, {"type": "track", "userId": "u1", "event": "Cart Abandoned"})
    timers_tick(now=timezone.now() + timedelta(hours=1, seconds=1))
    customer = Customer.objects.get(identities__value="u1")
    response = call("get", f"/api/v1/customers/{customer.id}/journeys")
    assert response.status_code == 200
    (enrollment,) = response.json()
    assert enrollment["journey"] == "abandoned-cart"
    held = [run for run in enrollment["history"] if run["outcome"] == "held"]
    assert held and "frequency_cap" in held[0]["detail"]["why"]
    assert call("get", "/api/v1/customers/8b0b6e8e-0000-4000-8000-000000000000/journeys").status_code == 404


def test_the_api_needs_a_token(client: Client) -> None:
    assert client.get("/api/v1/enrollments/8b0b6e8e-0000-4000-8000-000000000000").status_code == 401
