"""Helpers for the engine's tests: publish a definition, route what ingestion stored, and
point channels' providers at local stand-ins (nothing is sent in tests that do not run a
worker: a delivery's send task is enqueued only after a commit)."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from channels.selectors import contact_policy_forget
from journeys.models import JourneyVersion
from journeys.services import journey_create, journey_publish
from orchestration.routing import route
from profiles.models import Event, EventOutbox


@pytest.fixture(autouse=True)
def fresh_contact_policy() -> Iterator[None]:
    """The contact policy is cached per process: every test starts from the stored one."""
    contact_policy_forget()
    yield
    contact_policy_forget()


@pytest.fixture
def providers(settings: Any) -> None:
    settings.CHANNELS_PROVIDERS = {
        "fcm": {
            "kind": "fcm",
            "enabled": "true",
            "base_url": "http://127.0.0.1:9",
            "project_id": "p",
            "access_token": "t",
        },
        "twilio": {
            "kind": "twilio",
            "base_url": "http://127.0.0.1:9",
            "account_sid": "AC00000000000000000000000000000001",
            "auth_token": "token",
            "from_number": "+15005550006",
        },
        "smtp": {"kind": "smtp", "host": "127.0.0.1", "port": "1", "from_email": "hello@throughline.test"},
        "webhook": {"kind": "webhook", "signing_secret": "whsec_test"},
    }
    settings.CHANNELS_ROUTES = {"push": ["fcm"], "sms": ["twilio"], "email": ["smtp"], "webhook": ["webhook"]}


def publish(definition: dict[str, Any], key: str = "j") -> JourneyVersion:
    version = journey_create(key=key, name=key, definition=definition)
    journey_publish(version=version)
    version.refresh_from_db()
    return version


def route_pending() -> int:
    """Route everything on the outbox, including events routing itself ingests (outcomes,
    Segment Entered, journeys' own track calls), until nothing is left."""
    total = 0
    for _ in range(20):
        ids = list(EventOutbox.objects.values_list("event_id", flat=True))
        if not ids:
            return total
        total += route(ids)
    return total


def send(ingest: Any, *messages: dict[str, Any]) -> list[int]:
    """Ingest through /v1/batch (real auth, parsing, identity resolution) and route."""
    before = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    stamped = [{"timestamp": timezone.now().isoformat(), **m} for m in messages]
    response = ingest.post("batch", {"batch": stamped})
    assert response.status_code == 200, response.content
    route_pending()
    return list(Event.objects.filter(id__gt=before).order_by("id").values_list("id", flat=True))


def identify(ingest: Any, user_id: str, **traits: Any) -> None:
    """A customer with an address on every channel and marketing consent on each."""
    base = {
        "email": f"{user_id}@example.com",
        "phone": "+14155550100",
        "push_token": f"device-{user_id}",
        "first_name": "Ada",
    }
    send(
        ingest,
        {
            "type": "identify",
            "userId": user_id,
            "traits": {**base, **traits},
            "context": {"consent": {"marketing": True}},
        },
    )
