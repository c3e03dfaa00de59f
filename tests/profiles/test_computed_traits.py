"""Computed traits kept up to date as events are routed."""

from typing import Any

import pytest

from orchestration.routing import route
from profiles.computed_traits import computed_trait_create
from profiles.merging import customer_merge
from profiles.models import Event, Identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def traits() -> None:
    computed_trait_create(name="order_count", kind="count", event_name="Order Completed")
    computed_trait_create(name="lifetime_value", kind="sum", event_name="Order Completed", property="total")
    computed_trait_create(name="last_seen_channel", kind="last_value", event_name="Visit", property="$channel")


def _route_all() -> None:
    route(list(Event.objects.values_list("id", flat=True)))


def _computed(api: Any, user_id: str) -> dict[str, Any]:
    return api("/api/v1/customers", user_id=user_id).json()["computed_traits"]


def test_routed_events_update_computed_traits(ingest: Any, api: Any, traits: None) -> None:
    for total in (20, 30):
        ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": total}})
    ingest.post("track", {"userId": "ann", "event": "Visit"})
    _route_all()
    assert _computed(api, "ann") == {"order_count": 2, "lifetime_value": 50, "last_seen_channel": "web"}


def test_routing_again_does_not_count_twice(ingest: Any, api: Any, traits: None) -> None:
    ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": 5}})
    _route_all()
    _route_all()
    assert _computed(api, "ann")["order_count"] == 1


def test_merged_profiles_add_up_their_computed_traits(ingest: Any, api: Any, traits: None) -> None:
    ingest.post("track", {"anonymousId": "kiosk", "event": "Order Completed", "properties": {"total": 10}})
    ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": 15}})
    _route_all()
    ids = {Identity.objects.get(value="kiosk").customer_id, Identity.objects.get(value="ann").customer_id}
    customer_merge(customer_ids=ids, reason="same person", actor="test")
    assert _computed(api, "ann")["lifetime_value"] == 25


def test_defining_a_computed_trait_through_the_api(client: Any, api_token: Any) -> None:
    response = client.post(
        "/api/v1/computed-traits",
        {"name": "orders_30d", "kind": "count", "event_name": "Order Completed", "window_days": 30},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token.secret}",
    )
    assert response.status_code == 201, response.content
    assert response.json()["window_days"] == 30


def test_a_sum_without_a_property_is_400(client: Any, api_token: Any) -> None:
    response = client.post(
        "/api/v1/computed-traits",
        {"name": "ltv", "kind": "sum", "event_name": "Order Completed"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token.secret}",
    )
    assert response.status_code == 400
    assert "property" in response.json()["detail"]
