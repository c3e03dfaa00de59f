"""Inbound provider webhooks: signatures, replays, dedup, consent keywords, translation."""

import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from channels.inbound import RECEIVERS
from channels.models import WebhookProvider
from channels.services.webhook_secrets import webhook_secret_set
from channels.signing import twilio_sign
from config.core.signing import stripe_sign
from profiles.models import Event, QuarantinedMessage, Source
from profiles.privacy.selectors import consent_allows
from profiles.selectors import customer_find
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
SECRET = "whsec_inbound_test"


@pytest.fixture
def sms_source() -> Source:
    source: Source = SourceFactory.create(channel="sms")
    webhook_secret_set(source_id=source.id, provider="twilio", secret=SECRET)
    return source


@pytest.fixture
def signed_source() -> Source:
    source: Source = SourceFactory.create(channel="pos")
    webhook_secret_set(source_id=source.id, provider="pos", secret=SECRET)
    webhook_secret_set(source_id=source.id, provider="chat", secret=SECRET)
    return source


def _post_twilio(client: Client, source: Source, body: str, *, signature: str | None = None) -> Any:
    url = f"http://testserver/v1/webhooks/twilio/{source.id}"
    if signature is None:
        signature = twilio_sign(SECRET, url, urllib.parse.parse_qsl(body, keep_blank_values=True))
    return client.post(
        url,
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def _post_signed(client: Client, source: Source, provider: str, body: bytes, header: str | None = None) -> Any:
    header = header if header is not None else stripe_sign(SECRET, body, int(time.time()))
    return client.post(
        f"/v1/webhooks/{provider}/{source.id}",
        data=body,
        content_type="application/json",
        HTTP_THROUGHLINE_SIGNATURE=header,
    )


def _fixture(path: str) -> str:
    return (FIXTURES / path).read_text().strip()


# --- Twilio ----------------------------------------------------------------------------------


def test_twilio_inbound_sms_becomes_an_event(client: Client, sms_source: Source) -> None:
    response = _post_twilio(client, sms_source, _fixture("twilio/inbound_sms.txt"))

    assert response.status_code == 200, response.content
    event = Event.objects.get(source=sms_source)
    assert (event.name, event.properties["body"]) == ("SMS Received", "Is my order on its way?")


def test_twilio_wrong_signature_is_401_and_stores_nothing(client: Client, sms_source: Source) -> None:
    response = _post_twilio(client, sms_source, _fixture("twilio/inbound_sms.txt"), signature="bm9wZQ==")

    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    assert not Event.objects.filter(source=sms_source).exists()


def test_twilio_unsigned_is_401(client: Client, sms_source: Source) -> None:
    response = _post_twilio(client, sms_source, _fixture("twilio/inbound_sms.txt"), signature="")

    assert response.status_code == 401


def test_twilio_tampered_body_is_401(client: Client, sms_source: Source) -> None:
    body = _fixture("twilio/inbound_sms.txt")
    url = f"http://testserver/v1/webhooks/twilio/{sms_source.id}"
    signature = twilio_sign(SECRET, url, urllib.parse.parse_qsl(body))

    response = _post_twilio(client, sms_source, body.replace("Is+my", "Was+my"), signature=signature)

    assert response.status_code == 401


def test_twilio_message_seen_before_is_acknowledged_and_stored_once(client: Client, sms_source: Source) -> None:
    body = _fixture("twilio/inbound_sms.txt")
    _post_twilio(client, sms_source, body)

    response = _post_twilio(client, sms_source, body)

    assert (response.status_code, response.json()["duplicates"]) == (200, 1)
    assert Event.objects.filter(source=sms_source).count() == 1


def test_stop_denies_sms_consent_and_start_grants_it_again(client: Client, sms_source: Source) -> None:
    stop = _fixture("twilio/stop.txt")
    _post_twilio(client, sms_source, stop)
    customer = customer_find(kind="phone", value="+14155550100")
    assert customer is not None
    assert not consent_allows(customer_id=customer.id, purpose="marketing", channel="sms")

    start = stop.replace("Body=STOP", "Body=start").replace("SM2a0e", "SM3b0e")
    _post_twilio(client, sms_source, start)

    assert consent_allows(customer_id=customer.id, purpose="marketing", channel="sms")


def test_unknown_source_is_401(client: Client, sms_source: Source) -> None:
    other: Source = SourceFactory.create()

    response = _post_twilio(client, other, _fixture("twilio/inbound_sms.txt"))

    assert response.status_code == 401


# --- Stripe-style chat and POS ----------------------------------------------------------------


def test_pos_purchase_is_order_completed_with_line_items(client: Client, signed_source: Source) -> None:
    response = _post_signed(client, signed_source, "pos", _fixture("pos/order_completed.json").encode())

    assert response.status_code == 200, response.content
    event = Event.objects.get(source=signed_source)
    assert event.name == "Order Completed"
    assert event.properties["products"] == [
        {"sku": "ESP-250", "name": "Espresso beans 250 g", "quantity": 2, "price": 8.75},
        {"sku": "MUG-01", "name": "Mug", "quantity": 1, "price": 6.0},
    ]
    assert event.properties["total"] == 23.5


def test_chat_message_becomes_an_event(client: Client, signed_source: Source) -> None:
    _post_signed(client, signed_source, "chat", _fixture("chat/message_created.json").encode())

    event = Event.objects.get(source=signed_source)

    assert (event.name, event.user_id) == ("Chat Message Received", "cust-1042")


@pytest.mark.parametrize("provider", ["chat", "pos"])
def test_wrong_signature_is_401(client: Client, signed_source: Source, provider: str) -> None:
    body = _fixture(f"{provider}/" + ("message_created.json" if provider == "chat" else "order_completed.json"))

    response = _post_signed(client, signed_source, provider, body.encode(), stripe_sign("other", body.encode(), 0))

    assert response.status_code == 401
    assert not Event.objects.filter(source=signed_source).exists()


def test_unsigned_is_401(client: Client, signed_source: Source) -> None:
    response = _post_signed(client, signed_source, "pos", _fixture("pos/order_completed.json").encode(), header="")

    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")


def test_stale_signature_is_401(client: Client, signed_source: Source) -> None:
    body = _fixture("pos/order_completed.json").encode()

    response = _post_signed(client, signed_source, "pos", body, stripe_sign(SECRET, body, int(time.time()) - 301))

    assert response.status_code == 401


def test_replayed_request_is_409_and_stored_once(client: Client, signed_source: Source) -> None:
    body = _fixture("pos/order_completed.json").encode()
    header = stripe_sign(SECRET, body, int(time.time()))
    _post_signed(client, signed_source, "pos", body, header)

    response = _post_signed(client, signed_source, "pos", body, header)

    assert (response.status_code, response.json()["code"]) == (409, "replayed")
    assert Event.objects.filter(source=signed_source).count() == 1


def test_provider_event_resent_with_a_new_signature_is_acknowledged_once(client: Client, signed_source: Source) -> None:
    body = _fixture("pos/order_completed.json").encode()
    _post_signed(client, signed_source, "pos", body, stripe_sign(SECRET, body, int(time.time()) - 5))

    response = _post_signed(client, signed_source, "pos", body)

    assert (response.status_code, response.json()["duplicates"]) == (200, 1)
    assert Event.objects.filter(source=signed_source).count() == 1


def test_event_without_identity_is_quarantined_not_a_500(client: Client, signed_source: Source) -> None:
    body = b'{"id": "evt_x", "type": "order.completed", "data": {"order_id": "1"}}'

    response = _post_signed(client, signed_source, "pos", body)

    assert (response.status_code, response.json()["rejected"]) == (200, 1)
    assert QuarantinedMessage.objects.filter(source=signed_source).exists()


def test_signed_garbage_is_400(client: Client, signed_source: Source) -> None:
    response = _post_signed(client, signed_source, "pos", b"not json")

    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")


# --- the registry ----------------------------------------------------------------------------


def test_every_provider_a_secret_can_be_stored_for_has_a_receiver_and_no_other() -> None:
    assert set(RECEIVERS) == set(WebhookProvider.values)


def test_unknown_provider_is_400(client: Client, signed_source: Source) -> None:
    response = _post_signed(client, signed_source, "stripe", b'{"id": "evt_1"}')

    assert (response.status_code, response.json()["code"]) == (400, "unknown_provider")
