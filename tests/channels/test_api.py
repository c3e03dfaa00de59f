"""POST /api/v1/messages and GET /api/v1/deliveries/{id}."""

import uuid
from typing import Any

import pytest
from django.test import Client

from channels.models import Delivery
from tests.channels.factories import customer_with

pytestmark = pytest.mark.django_db


def _send(client: Client, token: Any, body: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/messages", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token.secret}"
    )


def _body(customer_id: Any, key: str = "one-off-1") -> dict[str, Any]:
    return {"channel": "sms", "customer_id": str(customer_id), "content": {"body": "Hi"}, "idempotency_key": key}


def test_staff_send_is_accepted_as_a_queued_delivery(client: Client, api_token: Any) -> None:
    customer = customer_with(user_id="u1", phone="+14155550100")

    response = _send(client, api_token, _body(customer.id))

    assert response.status_code == 202, response.content
    assert (response.json()["status"], response.json()["idempotency_key"]) == ("queued", "one-off-1")


def test_same_key_twice_returns_the_same_delivery(client: Client, api_token: Any) -> None:
    customer = customer_with(user_id="u1", phone="+14155550100")
    first = _send(client, api_token, _body(customer.id)).json()

    second = _send(client, api_token, _body(customer.id)).json()

    assert first["id"] == second["id"]
    assert Delivery.objects.count() == 1


def test_bad_input_is_a_400_with_a_code(client: Client, api_token: Any) -> None:
    response = _send(client, api_token, {"channel": "pigeon"})

    assert response.status_code == 400
    assert set(response.json()) >= {"detail", "code"}


def test_unknown_fallback_provider_is_a_400(client: Client, api_token: Any) -> None:
    response = _send(client, api_token, {**_body(uuid.uuid4()), "fallback": ["nope"]})

    assert (response.status_code, response.json()["code"]) == (400, "invalid_fallback")


def test_sending_needs_a_token(client: Client) -> None:
    response = client.post("/api/v1/messages", data=_body(uuid.uuid4()), content_type="application/json")

    assert response.status_code == 401


def test_delivery_is_readable_by_id(client: Client, api: Any, api_token: Any) -> None:
    customer = customer_with(user_id="u1", phone="+14155550100")
    created = _send(client, api_token, _body(customer.id)).json()

    response = api(f"/api/v1/deliveries/{created['id']}")

    assert (response.status_code, response.json()["id"]) == (200, created["id"])


def test_unknown_delivery_is_404(api: Any) -> None:
    response = api(f"/api/v1/deliveries/{uuid.uuid4()}")

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
