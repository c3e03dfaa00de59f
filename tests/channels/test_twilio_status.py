"""Twilio status callbacks: signed like inbound SMS, they move an outbound SMS's delivery to
delivered or failed by its MessageSid and record the outcome event, once."""

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from channels.models import Delivery, DeliveryStatus, UndeliverableAddress
from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from channels.services.webhook_secrets import webhook_secret_set
from channels.signing import twilio_sign
from profiles.models import Event, Source
from tests.channels.factories import customer_with
from tests.channels.servers import HttpSink
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks" / "twilio"
AUTH_TOKEN = "twilio-auth-token"
PHONE = "+14155550100"


@pytest.fixture
def sms_source() -> Source:
    source: Source = SourceFactory.create(channel="sms")
    webhook_secret_set(source_id=source.id, provider="twilio", secret=AUTH_TOKEN)
    return source


@pytest.fixture
def sent_sms(providers: Any, http_sink: HttpSink) -> Delivery:
    """An SMS the Twilio stand-in accepted as SM000...0 (the sid the fixtures carry)."""
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="s1")
    delivery_attempt(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    return delivery


def _callback(client: Client, source: Source, fixture: str, *, signature: str | None = None) -> Any:
    body = (FIXTURES / fixture).read_text()
    url = f"http://testserver/v1/webhooks/twilio/{source.id}/status"
    if signature is None:
        signature = twilio_sign(AUTH_TOKEN, url, urllib.parse.parse_qsl(body, keep_blank_values=True))
    return client.post(
        url, data=body, content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
    )


def _outcomes(delivery: Delivery, name: str) -> int:
    return Event.objects.filter(customer_id=delivery.customer_id, name=name).count()


def test_delivered_moves_the_delivery_and_records_message_delivered_once(
    client: Client, sms_source: Source, sent_sms: Delivery
) -> None:
    first = _callback(client, sms_source, "status_delivered.txt")
    again = _callback(client, sms_source, "status_delivered.txt")

    assert first.status_code == again.status_code == 200
    assert first.json() == {"matched": True, "delivery_id": str(sent_sms.id), "status": "delivered"}
    sent_sms.refresh_from_db()
    assert sent_sms.status == DeliveryStatus.DELIVERED
    event = Event.objects.get(customer_id=sent_sms.customer_id, name="Message Delivered")
    assert event.properties["delivery_id"] == str(sent_sms.id)


def test_undelivered_fails_the_delivery_with_the_error_code(
    client: Client, sms_source: Source, sent_sms: Delivery
) -> None:
    assert _callback(client, sms_source, "status_undelivered.txt").json()["status"] == "failed"

    sent_sms.refresh_from_db()
    assert (sent_sms.status, sent_sms.last_error) == ("failed", "twilio undelivered (error 30003)")
    assert _outcomes(sent_sms, "Message Failed") == 1
    assert not UndeliverableAddress.objects.filter(channel="sms", address=PHONE).exists()


def test_a_landline_failure_marks_the_number_undeliverable(
    client: Client, sms_source: Source, sent_sms: Delivery
) -> None:
    _callback(client, sms_source, "status_failed_landline.txt")

    assert UndeliverableAddress.objects.filter(channel="sms", address=PHONE).exists()


def test_a_late_failure_does_not_undo_delivered(client: Client, sms_source: Source, sent_sms: Delivery) -> None:
    _callback(client, sms_source, "status_delivered.txt")
    _callback(client, sms_source, "status_undelivered.txt")

    sent_sms.refresh_from_db()
    assert (sent_sms.status, _outcomes(sent_sms, "Message Failed")) == ("delivered", 0)


def test_in_flight_statuses_are_acknowledged_without_change(
    client: Client, sms_source: Source, sent_sms: Delivery
) -> None:
    response = _callback(client, sms_source, "status_sent.txt")

    assert response.json() == {"matched": True, "delivery_id": str(sent_sms.id), "status": "sent"}
    sent_sms.refresh_from_db()
    assert sent_sms.status == DeliveryStatus.SENT


def test_an_unknown_message_sid_is_acknowledged_and_stores_nothing(client: Client, sms_source: Source) -> None:
    response = _callback(client, sms_source, "status_delivered.txt")

    assert response.json() == {"matched": False, "delivery_id": None, "status": "delivered"}
    assert not Event.objects.exists()


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU="])
def test_unsigned_or_wrongly_signed_callbacks_are_refused(
    client: Client, sms_source: Source, sent_sms: Delivery, signature: str
) -> None:
    response = _callback(client, sms_source, "status_delivered.txt", signature=signature)

    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    sent_sms.refresh_from_db()
    assert sent_sms.status == DeliveryStatus.SENT


def test_a_callback_without_a_status_is_a_400(client: Client, sms_source: Source) -> None:
    url = f"http://testserver/v1/webhooks/twilio/{sms_source.id}/status"
    body = "MessageSid=SM1&MessageStatus=teleported"
    signature = twilio_sign(AUTH_TOKEN, url, urllib.parse.parse_qsl(body))

    response = client.post(
        url, data=body, content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_body")


def test_an_oversized_callback_is_a_413(client: Client, sms_source: Source) -> None:
    response = client.post(
        f"/v1/webhooks/twilio/{sms_source.id}/status",
        data="Body=" + "x" * 300_000,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 413


def test_the_sms_asks_twilio_for_status_callbacks(providers: Any, http_sink: HttpSink) -> None:
    providers["twilio"]["status_callback"] = "https://tl.example.com/v1/webhooks/twilio/abc/status"
    customer = customer_with(user_id="u1", phone=PHONE)

    delivery_attempt(
        delivery_id=deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="cb").id
    )

    form = urllib.parse.parse_qs(http_sink.requests[0].body.decode())
    assert form["StatusCallback"] == ["https://tl.example.com/v1/webhooks/twilio/abc/status"]


def test_a_callback_that_beats_the_send_recording_its_sid_is_applied_when_it_does(
    client: Client, sms_source: Source, providers: Any, http_sink: HttpSink
) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="early")
    assert _callback(client, sms_source, "status_delivered.txt").json()["matched"] is False

    delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert _outcomes(delivery, "Message Delivered") == 1
