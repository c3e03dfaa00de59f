"""The send logic of one attempt, called directly (the queue is covered in test_worker)."""

import time
import urllib.parse
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from channels.models import Delivery, DeliveryStatus
from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from channels.signing import stripe_verify
from profiles.models import Event
from tests.channels.factories import customer_with, deny
from tests.channels.servers import HttpSink
from tests.conftest import client_traceparents

pytestmark = pytest.mark.django_db
PHONE = "+14155550100"


def _sms(customer_id: Any, key: str = "k1", **kwargs: Any) -> Delivery:
    return deliver(channel="sms", customer_id=customer_id, content={"body": "Hi"}, idempotency_key=key, **kwargs)


def test_sms_is_posted_in_twilio_format_with_basic_auth(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)

    assert delivery_attempt(delivery_id=delivery.id).status == DeliveryStatus.SENT

    (request,) = http_sink.requests
    assert request.path == "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json"
    assert request.headers["Authorization"].startswith("Basic ")
    assert urllib.parse.parse_qs(request.body.decode()) == {"To": [PHONE], "From": ["+15005550006"], "Body": ["Hi"]}
    delivery.refresh_from_db()
    assert (delivery.provider, delivery.provider_message_id) == ("twilio", "SM0000000000000000000000000000000")


def test_webhook_is_signed_by_throughline(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1", traits={"webhook_url": f"{http_sink.url}/hook"})
    delivery = deliver(channel="webhook", customer_id=customer.id, content={"a": 1}, idempotency_key="w1")

    delivery_attempt(delivery_id=delivery.id)

    (request,) = http_sink.requests
    stripe_verify("whsec_test", request.body, request.headers["Throughline-Signature"], now=time.time(), tolerance=300)
    assert orjson.loads(request.body) == {"id": str(delivery.id), "content": {"a": 1}}
    assert request.headers["Idempotency-Key"] == request.headers["webhook-id"] == "w1"


def test_a_webhook_is_not_sent_when_the_signing_secret_is_empty(providers: Any, http_sink: HttpSink) -> None:
    providers["webhook"]["signing_secret"] = ""
    customer = customer_with(user_id="u1", traits={"webhook_url": f"{http_sink.url}/hook"})
    delivery = deliver(channel="webhook", customer_id=customer.id, content={"a": 1}, idempotency_key="w-unsigned")

    attempted = delivery_attempt(delivery_id=delivery.id)

    assert http_sink.requests == []
    assert attempted.status == DeliveryStatus.FAILED
    delivery.refresh_from_db()
    assert "CHANNELS_WEBHOOK_SIGNING_SECRET is not set" in delivery.last_error


@pytest.mark.parametrize("channel", ["sms", "webhook"])
def test_a_provider_call_carries_the_traceparent_of_its_span(
    providers: Any, http_sink: HttpSink, spans: InMemorySpanExporter, channel: str
) -> None:
    customer = customer_with(user_id="u1", phone=PHONE, traits={"webhook_url": f"{http_sink.url}/hook"})
    delivery = deliver(channel=channel, customer_id=customer.id, content={"body": "Hi"}, idempotency_key="t1")

    assert delivery_attempt(delivery_id=delivery.id).status == DeliveryStatus.SENT

    (request,) = http_sink.requests
    assert request.headers["traceparent"] in client_traceparents(spans)


def test_a_webhook_url_on_a_private_address_is_refused(providers: Any, http_sink: HttpSink, settings: Any) -> None:
    # Any write key can set the webhook_url trait: in production it must not reach our network.
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False
    customer = customer_with(user_id="u1", traits={"webhook_url": f"{http_sink.url}/hook"})
    delivery = deliver(channel="webhook", customer_id=customer.id, content={"a": 1}, idempotency_key="w-private")

    attempted = delivery_attempt(delivery_id=delivery.id)

    assert http_sink.requests == []
    assert attempted.status == DeliveryStatus.FAILED  # permanent: not retried
    delivery.refresh_from_db()
    assert "private address" in delivery.last_error


def test_email_goes_over_smtp(providers: Any, smtp: Any) -> None:
    controller, recorder = smtp
    providers["smtp"]["port"] = str(controller.port)
    customer = customer_with(user_id="u1", email="ada@example.com")
    delivery = deliver(
        channel="email", customer_id=customer.id, content={"subject": "Hello", "body": "Hi"}, idempotency_key="e1"
    )

    assert delivery_attempt(delivery_id=delivery.id).status == DeliveryStatus.SENT

    assert recorder.envelopes == [["ada@example.com"]]
    assert recorder.messages[0]["Subject"] == "Hello"


def test_same_idempotency_key_is_one_delivery_and_one_send(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    first = _sms(customer.id)
    second = _sms(customer.id)

    delivery_attempt(delivery_id=first.id)
    delivery_attempt(delivery_id=second.id)

    assert first.id == second.id
    assert len(http_sink.requests) == 1


def test_consent_is_checked_at_send_time(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id, purpose="marketing")
    deny(customer, purpose="marketing", channel="sms")

    assert delivery_attempt(delivery_id=delivery.id).status == DeliveryStatus.SKIPPED

    assert http_sink.requests == []
    delivery.refresh_from_db()
    assert delivery.last_error == "no consent for marketing on sms"


def test_no_address_is_skipped_with_a_reason(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1")
    delivery = _sms(customer.id)

    delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error, http_sink.requests) == ("skipped", "no sms address", [])


def test_5xx_retries_then_the_delivery_is_dead_with_its_reason(providers: Any, http_sink: HttpSink) -> None:
    providers["sms_secondary"]["enabled"] = "false"
    http_sink.default = (503, {}, b"down")
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)

    results = [delivery_attempt(delivery_id=delivery.id) for _ in range(3)]

    assert [r.status for r in results] == ["queued", "queued", "dead"]
    assert all(r.retry_in is not None and r.retry_in > 0 for r in results[:2])
    delivery.refresh_from_db()
    assert delivery.attempts == 3
    assert delivery.last_error.startswith("gave up after 3 attempts: twilio: HTTP 503")


def test_4xx_fails_at_once_without_retry(providers: Any, http_sink: HttpSink) -> None:
    http_sink.default = (400, {}, b'{"code": 21211, "message": "invalid To"}')
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)

    result = delivery_attempt(delivery_id=delivery.id)

    assert (result.status, result.retry_in) == ("failed", None)
    assert len(http_sink.requests) == 1


def test_429_retry_after_is_honoured(providers: Any, http_sink: HttpSink) -> None:
    providers["sms_secondary"]["enabled"] = "false"
    http_sink.default = (429, {"Retry-After": "120"}, b"slow down")
    customer = customer_with(user_id="u1", phone=PHONE)

    result = delivery_attempt(delivery_id=_sms(customer.id).id)

    assert result.retry_in is not None and result.retry_in >= 120


def test_a_failing_primary_fails_over_to_the_secondary(
    providers: Any, http_sink: HttpSink, second_sink: HttpSink
) -> None:
    http_sink.default = (500, {}, b"boom")
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)

    assert delivery_attempt(delivery_id=delivery.id).status == DeliveryStatus.SENT

    delivery.refresh_from_db()
    assert (delivery.provider, len(http_sink.requests), len(second_sink.requests)) == ("sms_secondary", 1, 1)


def test_open_breaker_skips_the_primary_entirely(providers: Any, http_sink: HttpSink, second_sink: HttpSink) -> None:
    http_sink.default = (500, {}, b"boom")
    customer = customer_with(user_id="u1", phone=PHONE)
    for n in range(3):
        delivery_attempt(delivery_id=_sms(customer.id, key=f"trip-{n}").id)
    assert len(http_sink.requests) == 3

    delivery_attempt(delivery_id=_sms(customer.id, key="after").id)

    assert len(http_sink.requests) == 3
    assert len(second_sink.requests) == 4


def test_breaker_half_opens_and_recovers(providers: Any, http_sink: HttpSink, settings: Any) -> None:
    providers["sms_secondary"]["enabled"] = "false"
    settings.CHANNELS_BREAKER_RESET_SECONDS = 0.2
    http_sink.script = [(500, {}, b"boom")] * 3
    customer = customer_with(user_id="u1", phone=PHONE)
    for n in range(3):
        delivery_attempt(delivery_id=_sms(customer.id, key=f"trip-{n}").id)
    assert delivery_attempt(delivery_id=_sms(customer.id, key="while-open").id).retry_in is not None
    assert len(http_sink.requests) == 3

    time.sleep(0.3)
    result = delivery_attempt(delivery_id=_sms(customer.id, key="recovered").id)

    assert result.status == DeliveryStatus.SENT


def test_outcomes_become_events_on_the_profile(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)
    delivery_attempt(delivery_id=delivery.id)

    event = Event.objects.get(customer_id=customer.id, name="Message Sent")

    assert event.properties["delivery_id"] == str(delivery.id)
    assert event.message_id == f"delivery:{delivery.id}:sent"


def test_a_dead_delivery_is_a_message_failed_event(providers: Any, http_sink: HttpSink) -> None:
    http_sink.default = (400, {}, b"bad")
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery_attempt(delivery_id=_sms(customer.id).id)

    event = Event.objects.get(customer_id=customer.id, name="Message Failed")

    assert event.properties["reason"] == "HTTP 400: Bad Request"


def test_a_redelivered_task_for_a_claimed_delivery_sends_nothing(providers: Any, http_sink: HttpSink) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)
    Delivery.objects.filter(id=delivery.id).update(status=DeliveryStatus.SENDING, attempts=1)

    result = delivery_attempt(delivery_id=delivery.id)

    assert (result.status, http_sink.requests) == ("sending", [])


def test_dead_deliveries_show_their_reason_in_the_admin(providers: Any, admin_client: Any) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = _sms(customer.id)
    Delivery.objects.filter(id=delivery.id).update(status=DeliveryStatus.DEAD, last_error="gave up: HTTP 503")

    response = admin_client.get("/admin/channels/delivery/?status__exact=dead")

    assert response.status_code == 200
    assert b"gave up: HTTP 503" in response.content
