"""A delivery whose providers are all behind open breakers waits for the half-open trial without
spending attempts or writes, so an outage neither kills messages nor costs the healthy
providers' throughput."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from tests.channels.factories import customer_with
from tests.channels.servers import HttpSink

pytestmark = pytest.mark.django_db
PHONE = "+14155550100"


@pytest.fixture
def tripped(providers: Any, http_sink: HttpSink) -> Any:
    """The only SMS provider failed CHANNELS_BREAKER_FAIL_MAX (3) times: its breaker is open."""
    providers["sms_secondary"]["enabled"] = "false"
    http_sink.default = (503, {}, b"down")
    customer = customer_with(user_id="u1", phone=PHONE)
    for n in range(3):
        delivery_attempt(delivery_id=_sms(customer.id, f"trip-{n}").id)
    assert len(http_sink.requests) == 3
    return customer


def _sms(customer_id: Any, key: str) -> Delivery:
    return deliver(channel="sms", customer_id=customer_id, content={"body": "Hi"}, idempotency_key=key)


def test_a_delivery_behind_open_breakers_waits_without_spending_an_attempt(tripped: Any, http_sink: HttpSink) -> None:
    delivery = _sms(tripped.id, "parked")

    result = delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert (result.status, delivery.status, delivery.attempts, len(http_sink.requests)) == ("queued", "queued", 0, 3)
    assert result.retry_in is not None and 59 <= result.retry_in <= 61.5  # the 60 s reset, plus jitter


def test_while_the_breaker_stays_open_the_next_try_writes_nothing(tripped: Any) -> None:
    delivery = _sms(tripped.id, "parked")
    delivery_attempt(delivery_id=delivery.id)
    before = Delivery.objects.get(id=delivery.id).updated_at

    result = delivery_attempt(delivery_id=delivery.id)

    assert (result.status, Delivery.objects.get(id=delivery.id).updated_at) == ("queued", before)


def test_a_delivery_parked_too_long_is_dead(tripped: Any, settings: Any) -> None:
    settings.CHANNELS_MAX_DEFER_SECONDS = 60
    delivery = _sms(tripped.id, "old")
    Delivery.objects.filter(id=delivery.id).update(queued_at=timezone.now() - timedelta(minutes=5))

    assert delivery_attempt(delivery_id=delivery.id).status == DeliveryStatus.DEAD
    assert Delivery.objects.get(id=delivery.id).last_error.startswith("providers unavailable for ")
