"""The sweeper of deliveries left "sending" by a dead worker (the crash itself is in test_worker)."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from channels.services.deliveries import deliver
from channels.services.sweeps import SweepResult, deliveries_queued_sweep, deliveries_stuck_sweep
from channels.tasks import sweep_stuck_deliveries
from profiles.models import Event
from tests.channels.factories import customer_with

pytestmark = pytest.mark.django_db


def _stuck(channel: str, *, minutes_ago: float, attempts: int = 1, kind: str, address: str) -> Delivery:
    customer = customer_with(None, user_id=f"u-{channel}-{minutes_ago}", **{kind: address})
    delivery = deliver(
        channel=channel, customer_id=customer.id, content={"body": "Hi"}, idempotency_key=f"{channel}-{minutes_ago}"
    )
    Delivery.objects.filter(id=delivery.id).update(
        status=DeliveryStatus.SENDING, attempts=attempts, updated_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return delivery


def test_an_old_sending_sms_is_queued_again(providers: Any) -> None:
    delivery = _stuck("sms", minutes_ago=10, kind="phone", address="+14155550100")

    assert deliveries_stuck_sweep(older_than=300).requeued == [str(delivery.id)]

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == (
        "queued",
        "worker lost mid-send; re-sent with the same idempotency key",
    )


def test_a_recent_send_is_left_to_its_worker(providers: Any) -> None:
    delivery = _stuck("sms", minutes_ago=1, kind="phone", address="+14155550100")

    assert deliveries_stuck_sweep(older_than=300) == SweepResult(requeued=[], dead=[])
    delivery.refresh_from_db()
    assert delivery.status == "sending"


def test_an_email_is_not_resent_but_given_up_with_its_reason(providers: Any) -> None:
    delivery = _stuck("email", minutes_ago=10, kind="email", address="ada@example.com")

    assert deliveries_stuck_sweep(older_than=300).dead == [str(delivery.id)]

    delivery.refresh_from_db()
    assert delivery.status == "dead"
    assert "take no idempotency key" in delivery.last_error
    failed = Event.objects.get(customer_id=delivery.customer_id, name="Message Failed")
    assert failed.properties["delivery_id"] == str(delivery.id)


def test_a_delivery_that_used_its_attempts_is_dead(providers: Any, settings: Any) -> None:
    delivery = _stuck(
        "sms", minutes_ago=10, attempts=settings.CHANNELS_MAX_ATTEMPTS, kind="phone", address="+14155550100"
    )

    assert deliveries_stuck_sweep(older_than=300).dead == [str(delivery.id)]


def test_the_periodic_task_counts_what_it_did(providers: Any, settings: Any) -> None:
    settings.CHANNELS_STUCK_AFTER_SECONDS = 300
    _stuck("sms", minutes_ago=10, kind="phone", address="+14155550100")
    _stuck("email", minutes_ago=10, kind="email", address="ada@example.com")

    assert sweep_stuck_deliveries() == {"requeued": 1, "dead": 1, "enqueued": 0}


def test_a_queued_delivery_whose_task_was_lost_is_enqueued_again(providers: Any) -> None:
    customer = customer_with(None, user_id="u-lost", phone="+14155550100")
    lost = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="lost")
    recent = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="recent")
    Delivery.objects.filter(id=lost.id).update(updated_at=timezone.now() - timedelta(minutes=20))

    assert deliveries_queued_sweep(older_than=900) == [str(lost.id)]
    assert deliveries_queued_sweep(older_than=900) == [], "touched: the next sweep leaves it to its new task"
    assert Delivery.objects.get(id=recent.id).status == "queued"
