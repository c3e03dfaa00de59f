"""The operator dashboard in the admin: staff only, linked from the index, showing the path's
state from the database, the broker and the metrics."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from channels.breaker import breakers_reset
from channels.models import Delivery
from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from tests.channels.factories import customer_with
from tests.channels.servers import start_http_sink
from tests.conftest import IngestClient


def _cell(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert match, f"no #{element_id} on the page"
    return match.group(1).strip()


def _dead_delivery(settings: Any) -> Delivery:
    """A delivery that gave up for real: every attempt against a local server answering 503."""
    sink = start_http_sink()
    try:
        sink.default = (503, {}, b"down")
        settings.CHANNELS_PROVIDERS = {
            "twilio": {
                "kind": "twilio",
                "base_url": sink.url,
                "account_sid": "AC1",
                "auth_token": "t",
                "from_number": "+15005550006",
            }
        }
        settings.CHANNELS_ROUTES = {"sms": ["twilio"]}
        settings.CHANNELS_MAX_ATTEMPTS = 1
        settings.CHANNELS_BREAKER_FAIL_MAX = 1  # the one failure opens twilio's breaker
        customer = customer_with(user_id="u-dead", phone="+14155550100")
        delivery = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="dead-1")
        assert delivery_attempt(delivery_id=delivery.id).status == "dead"
    finally:
        sink.stop()
    return delivery


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    breakers_reset()
    yield
    breakers_reset()


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_shows_backlog_failures_and_breakers(
    ingest: IngestClient, admin_client: Client, settings: Any
) -> None:
    for n in range(4):
        assert ingest.post("track", {"userId": "u-1", "event": "Viewed", "messageId": f"d-{n}"}).status_code == 200
    ingest.post("batch", {"batch": [{"type": "track", "event": "No identity"}]})
    dead = _dead_delivery(settings)

    response = admin_client.get("/admin/operations/")

    html = response.content.decode()
    assert response.status_code == 200
    assert int(_cell(html, "events-received")) >= 4
    # No worker runs here: every accepted event waits on the outbox.
    assert int(_cell(html, "outbox-depth")) >= 4
    assert int(_cell(html, "quarantine-open")) == 1
    assert "<code>missing_identity</code>" in html
    assert str(dead.id) in html
    assert re.search(r'data-queue="routing">\d+<', html)
    assert 'data-provider="twilio">OPEN<' in html


@pytest.mark.django_db
def test_the_admin_index_links_to_it(admin_client: Client) -> None:
    assert 'href="/admin/operations/"' in admin_client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_only_staff_may_see_it(client: Client) -> None:
    response = client.get("/admin/operations/")
    assert (response.status_code, response["Location"].startswith("/admin/login/")) == (302, True)
