"""The channels configuration API: the contact policy, the contact check, a source's field
mapping and polling feed."""

from datetime import time
from typing import Any

import pytest
from django.test import Client

from channels.models import PollingFeed
from channels.services.contact_policy import contact_policy_set
from profiles.models import Source
from tests.channels.factories import customer_with, grant
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db
CAP = {"purpose": "marketing", "channel": "*", "max": 3, "window": {"days": 7}}
MAPPING = {"event": "Order Completed", "messageId": "id", "userId": "customer"}


def _put(client: Client, token: Any, path: str, body: Any) -> Any:
    return client.put(path, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token.secret}")


def test_the_contact_policy_is_read_and_replaced(client: Client, api_token: Any, api: Any) -> None:
    body = {"caps": [CAP], "quiet_start": "21:00:00", "quiet_end": "08:00:00", "fallback_timezone": "Europe/Paris"}

    response = _put(client, api_token, "/api/v1/contact-policy", body)

    assert response.status_code == 200, response.content
    assert api("/api/v1/contact-policy").json() == {**body, "high_priority_bypasses_caps": True}


def test_an_invalid_cap_is_a_400_naming_it(client: Client, api_token: Any) -> None:
    response = _put(client, api_token, "/api/v1/contact-policy", {"caps": [{**CAP, "window": {"weeks": 1}}]})

    assert (response.status_code, response.json()["code"]) == (400, "invalid_policy")
    assert "/caps/0/window" in response.json()["detail"]


def test_an_unknown_zone_is_a_400(client: Client, api_token: Any) -> None:
    response = _put(client, api_token, "/api/v1/contact-policy", {"fallback_timezone": "Mars/Base"})

    assert response.status_code == 400


def test_an_oversized_policy_is_a_413(client: Client, api_token: Any) -> None:
    response = _put(client, api_token, "/api/v1/contact-policy", {"caps": [], "pad": "x" * 70_000})

    assert response.status_code == 413


def test_the_contact_check_explains_a_customer_s_quiet_hours(api: Any, providers: Any) -> None:
    contact_policy_set(quiet_start=time(0, 0), quiet_end=time(23, 59, 59))
    customer = customer_with(user_id="u1", phone="+14155550100")
    grant(customer, purpose="marketing")

    body = api(f"/api/v1/customers/{customer.id}/contact-check", channel="sms", purpose="marketing").json()

    assert (body["allowed"], body["reason"], body["channels"]) == (False, "quiet_hours", {"sms": None})
    assert body["retry_at"] is not None


def test_the_contact_check_refuses_an_unknown_channel(api: Any) -> None:
    customer = customer_with(user_id="u1")

    response = api(f"/api/v1/customers/{customer.id}/contact-check", channel="fax", purpose="marketing")

    assert (response.status_code, set(response.json()) >= {"detail", "code"}) == (400, True)


@pytest.fixture
def erp() -> Source:
    source: Source = SourceFactory.create(channel="server")
    return source


def test_a_mapping_is_set_and_read_back(client: Client, api_token: Any, api: Any, erp: Source) -> None:
    assert api(f"/api/v1/sources/{erp.id}/event-mapping").status_code == 404

    response = _put(client, api_token, f"/api/v1/sources/{erp.id}/event-mapping", {"spec": MAPPING})

    assert response.status_code == 200
    assert api(f"/api/v1/sources/{erp.id}/event-mapping").json() == {"spec": MAPPING}


def test_an_invalid_mapping_is_a_400(client: Client, api_token: Any, erp: Source) -> None:
    response = _put(client, api_token, f"/api/v1/sources/{erp.id}/event-mapping", {"spec": {"event": "X"}})

    assert (response.status_code, response.json()["code"]) == (400, "invalid_mapping")


def test_a_feed_needs_a_mapping_first_and_hides_its_secret(
    client: Client, api_token: Any, api: Any, erp: Source
) -> None:
    feed = {"url": "https://legacy.example.com/orders", "auth_header_value": "Bearer k"}
    refused = _put(client, api_token, f"/api/v1/sources/{erp.id}/polling-feed", feed)
    _put(client, api_token, f"/api/v1/sources/{erp.id}/event-mapping", {"spec": MAPPING})

    accepted = _put(client, api_token, f"/api/v1/sources/{erp.id}/polling-feed", feed)

    assert (refused.status_code, refused.json()["code"]) == (400, "no_mapping")
    assert accepted.status_code == 200
    assert "auth_header_value" not in api(f"/api/v1/sources/{erp.id}/polling-feed").json()
    assert PollingFeed.objects.get(source_id=erp.id).auth_header_encrypted is not None


def test_a_feed_url_with_credentials_in_it_is_a_400(client: Client, api_token: Any, erp: Source) -> None:
    _put(client, api_token, f"/api/v1/sources/{erp.id}/event-mapping", {"spec": MAPPING})

    response = _put(
        client, api_token, f"/api/v1/sources/{erp.id}/polling-feed", {"url": "https://user:pw@legacy.example.com/o"}
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_feed")
    assert not PollingFeed.objects.filter(source_id=erp.id).exists()
