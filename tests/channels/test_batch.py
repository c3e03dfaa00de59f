"""Sends in batches: one task takes the never-tried deliveries waiting, and leaves retries alone."""

from typing import Any

import pytest

from channels.models import Delivery, DeliveryStatus
from channels.services import deliver, deliveries_attempt, delivery_attempt
from profiles.models import Event
from tests.channels.factories import customer_with, deny
from tests.channels.servers import HttpSink

pytestmark = pytest.mark.django_db


def _sms(customer_id: Any, key: str) -> Delivery:
    return deliver(channel="sms", customer_id=customer_id, content={"body": "Hi"}, idempotency_key=key)


def test_one_attempt_takes_the_waiting_deliveries_and_sends_each_once(providers: Any, http_sink: HttpSink) -> None:
    customers = [customer_with(user_id=f"u{n}", phone=f"+1415555010{n}") for n in range(4)]
    deliveries = [_sms(customer.id, f"b{n}") for n, customer in enumerate(customers)]

    results = deliveries_attempt(delivery_ids=[deliveries[0].id], fresh=10, only_fresh=True)

    assert {delivery_id: result.status for delivery_id, result in results.items()} == {
        delivery.id: DeliveryStatus.SENT for delivery in deliveries
    }
    assert sorted(r.headers["I-Twilio-Idempotency-Token"] for r in http_sink.requests) == ["b0", "b1", "b2", "b3"]
    assert Event.objects.filter(name="Message Sent").count() == 4


def test_a_batch_checks_consent_per_customer(providers: Any, http_sink: HttpSink) -> None:
    allowed = customer_with(user_id="u1", phone="+14155550101")
    refused = customer_with(user_id="u2", phone="+14155550102")
    deny(refused, purpose="transactional", channel="sms")
    first, second = _sms(allowed.id, "c1"), _sms(refused.id, "c2")

    results = deliveries_attempt(delivery_ids=[], fresh=10)

    assert (results[first.id].status, results[second.id].status) == (DeliveryStatus.SENT, DeliveryStatus.SKIPPED)
    assert len(http_sink.requests) == 1


def test_the_task_deliver_enqueued_leaves_a_delivery_waiting_for_its_retry(
    providers: Any, http_sink: HttpSink, second_sink: HttpSink
) -> None:
    customer = customer_with(user_id="u1", phone="+14155550101")
    delivery = _sms(customer.id, "r1")
    http_sink.script, second_sink.script = [(503, {}, b"")], [(503, {}, b"")]
    assert delivery_attempt(delivery_id=delivery.id).retry_in is not None

    results = deliveries_attempt(delivery_ids=[delivery.id], fresh=10, only_fresh=True)

    assert results[delivery.id].retry_in is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 1)
    assert (len(http_sink.requests), len(second_sink.requests)) == (1, 1), "nothing more until the retry"
