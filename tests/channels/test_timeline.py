"""Deliveries on the customer timeline, through the timeline API."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from channels.models import Delivery, DeliveryStatus
from profiles.models import Customer
from tests.channels.factories import customer_with

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _delivery(customer: Customer, minute: int, status: str = DeliveryStatus.SENT, **fields: Any) -> Delivery:
    delivery = Delivery.objects.create(
        idempotency_key=f"t-{uuid4()}",
        channel=fields.pop("channel", "sms"),
        purpose="marketing",
        customer_id=customer.id,
        status=status,
        queued_at=T0,
        **fields,
    )
    Delivery.objects.filter(id=delivery.id).update(created_at=T0 + timedelta(minutes=minute))
    return delivery


def _timeline(api: Any, customer_id: UUID, **params: Any) -> dict[str, Any]:
    response = api(f"/api/v1/customers/{customer_id}/timeline", **params)
    assert response.status_code == 200, response.content
    return response.json()


def test_deliveries_appear_newest_first_with_their_status(api: Any) -> None:
    customer = customer_with(user_id="u1")
    _delivery(customer, 1, DeliveryStatus.DELIVERED, provider="twilio")
    dead = _delivery(customer, 2, DeliveryStatus.DEAD, last_error="gave up after 6 attempts", channel="email")

    results = _timeline(api, customer.id, kinds="delivery")["results"]

    assert [(r["kind"], r["channel"], r["data"]["status"]) for r in results] == [
        ("delivery", "email", "dead"),
        ("delivery", "sms", "delivered"),
    ]
    assert (results[0]["id"], results[0]["data"]["last_error"]) == (str(dead.id), "gave up after 6 attempts")
    assert results[0]["at"] == "2026-11-01T12:02:00Z"


def test_pages_of_deliveries_concatenate_without_loss_or_repeat(api: Any) -> None:
    customer = customer_with(user_id="u1")
    made = [_delivery(customer, minute % 3) for minute in range(7)]  # ties at the same instant

    seen: list[str] = []
    body = _timeline(api, customer.id, kinds="delivery", page_size=2)
    seen += [r["id"] for r in body["results"]]
    while body["next_cursor"]:
        body = _timeline(api, customer.id, kinds="delivery", page_size=2, cursor=body["next_cursor"])
        seen += [r["id"] for r in body["results"]]

    assert sorted(seen) == sorted(str(d.id) for d in made)
    assert len(seen) == len(set(seen))


def test_a_merged_profile_s_deliveries_are_on_the_survivor_s_timeline(api: Any) -> None:
    survivor = customer_with(user_id="u1")
    merged = customer_with(user_id="u2")
    Customer.objects.filter(id=merged.id).update(merged_into=survivor)
    _delivery(merged, 1)

    assert [r["kind"] for r in _timeline(api, survivor.id, kinds="delivery")["results"]] == ["delivery"]


def test_deliveries_interleave_with_the_other_kinds(api: Any) -> None:
    customer = customer_with(user_id="u1")
    _delivery(customer, 1)

    kinds = {r["kind"] for r in _timeline(api, customer.id)["results"]}

    assert "delivery" in kinds
