"""Sends in batches: one task takes the never-tried deliveries waiting, and leaves retries alone."""

from typing import Any

import pytest
import redis

from channels.models import Delivery, DeliveryStatus
from channels.services.attempts import deliveries_attempt, delivery_attempt
from channels.services.deliveries import deliver, send_pending_clear
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


@pytest.mark.django_db(transaction=True)
def test_deliver_publishes_no_task_while_one_that_has_not_started_is_queued(providers: Any, settings: Any) -> None:
    settings.CHANNELS_SEND_PENDING_SECONDS = 30
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    customer = customer_with(user_id="u1", phone="+14155550101")
    queued = broker.llen("delivery")

    _sms(customer.id, "p1")
    _sms(customer.id, "p2")
    assert broker.llen("delivery") - queued == 1, "the second waits for the first's task"
    send_pending_clear()  # what a send task does when it starts, before it claims
    _sms(customer.id, "p3")

    assert broker.llen("delivery") - queued == 2
