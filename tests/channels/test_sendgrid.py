"""SendGrid Event Webhook: ECDSA signatures, outcome events, bounces and unsubscribes."""

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client

from channels.models import Delivery, DeliveryStatus
from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from channels.services.webhook_secrets import webhook_secret_set
from profiles.models import Event, Source
from profiles.privacy.selectors import consent_allows
from tests.channels.factories import customer_with
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks" / "sendgrid"
KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def source() -> Source:
    row: Source = SourceFactory.create(channel="email")
    public = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    webhook_secret_set(source_id=row.id, provider="sendgrid", secret=base64.b64encode(public).decode())
    return row


@pytest.fixture
def sent(providers: Any, smtp: Any) -> Delivery:
    controller, _ = smtp
    providers["smtp"]["port"] = str(controller.port)
    customer = customer_with(user_id="u-ada", email="ada@example.com")
    delivery = deliver(channel="email", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="sg-1")
    delivery_attempt(delivery_id=delivery.id)
    return delivery


def _post(client: Client, source: Source, body: bytes, *, key: Any = KEY, at: int | None = None) -> Any:
    timestamp = str(at if at is not None else int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        f"/v1/webhooks/sendgrid/{source.id}",
        data=body,
        content_type="application/json",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=base64.b64encode(signature).decode(),
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=timestamp,
    )


def _batch(name: str, delivery: Delivery | None = None) -> bytes:
    text = (FIXTURES / name).read_text()
    return text.replace("DELIVERY_ID", str(delivery.id) if delivery else "").encode()


def test_events_land_on_the_customer_and_mark_the_delivery_delivered(
    client: Client, source: Source, sent: Delivery
) -> None:
    response = _post(client, source, _batch("events.json", sent))

    assert (response.status_code, response.json()["accepted"]) == (200, 3), response.content
    names = set(Event.objects.filter(customer_id=sent.customer_id, source=source).values_list("name", flat=True))
    assert names == {"Message Delivered", "Message Opened", "Message Clicked"}
    sent.refresh_from_db()
    assert sent.status == DeliveryStatus.DELIVERED


def test_a_bounce_fails_the_delivery_and_blocks_the_address(
    client: Client, source: Source, sent: Delivery, smtp: Any
) -> None:
    _post(client, source, _batch("bounce.json", sent))
    again = deliver(channel="email", customer_id=sent.customer_id, content={"body": "Hi"}, idempotency_key="sg-2")

    delivery_attempt(delivery_id=again.id)

    sent.refresh_from_db()
    again.refresh_from_db()
    assert sent.status == DeliveryStatus.FAILED
    assert Event.objects.filter(customer_id=sent.customer_id, name="Message Bounced").exists()
    assert (again.status, again.last_error) == ("skipped", "email address is undeliverable (bounced)")
    assert len(smtp[1].messages) == 1


def test_unsubscribe_denies_marketing_email(client: Client, source: Source) -> None:
    customer = customer_with(user_id="u-ada", email="ada@example.com")

    _post(client, source, _batch("unsubscribe.json"))

    assert not consent_allows(customer_id=customer.id, purpose="marketing", channel="email")


def test_wrong_key_is_401(client: Client, source: Source) -> None:
    response = _post(client, source, _batch("unsubscribe.json"), key=ec.generate_private_key(ec.SECP256R1()))

    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")


def test_stale_is_401(client: Client, source: Source) -> None:
    response = _post(client, source, _batch("unsubscribe.json"), at=int(time.time()) - 301)

    assert response.status_code == 401


def test_unsigned_is_401(client: Client, source: Source) -> None:
    response = client.post(
        f"/v1/webhooks/sendgrid/{source.id}", data=_batch("unsubscribe.json"), content_type="application/json"
    )

    assert response.status_code == 401


def test_replayed_is_409(client: Client, source: Source) -> None:
    body = _batch("unsubscribe.json")
    at = int(time.time())
    signature_time = str(at)
    signature = base64.b64encode(KEY.sign(signature_time.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": signature,
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": signature_time,
    }
    url = f"/v1/webhooks/sendgrid/{source.id}"
    client.post(url, data=body, content_type="application/json", **headers)  # type: ignore[arg-type]

    response = client.post(url, data=body, content_type="application/json", **headers)  # type: ignore[arg-type]

    assert (response.status_code, response.json()["code"]) == (409, "replayed")
