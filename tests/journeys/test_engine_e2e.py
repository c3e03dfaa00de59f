"""The abandoned-cart journey end to end: real ingestion, real routing, the timer tick with a
moved clock, real channels deliveries, and outcome-based fallback from push to SMS."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from channels.services.outcomes import outcome_record
from journeys import demo
from journeys.models import Enrollment, EnrollmentStatus, StepRun, Timer
from journeys.services import timers_tick
from tests.journeys.engine_support import fresh_contact_policy, identify, providers, publish, route_pending, send

pytestmark = pytest.mark.django_db
__all__ = ["fresh_contact_policy", "providers"]


@pytest.fixture
def cart(ingest: Any, providers: None) -> Enrollment:
    publish(demo.ABANDONED_CART, key="abandoned-cart")
    identify(ingest, "u1")
    send(ingest, {"type": "track", "userId": "u1", "event": "Cart Abandoned", "properties": {"item_count": 2}})
    return Enrollment.objects.get()


def test_cart_abandoned_enters_and_waits_an_hour_for_the_order(cart: Enrollment) -> None:
    assert (cart.step, cart.status, (cart.waiting_for or {})["event"]) == (
        "wait_for_order",
        "active",
        "Order Completed",
    )
    timer = Timer.objects.get(enrollment=cart)
    assert timer.kind == "event_timeout"
    assert timedelta(minutes=59) < timer.due_at - cart.entered_at <= timedelta(hours=1, seconds=1)


def test_order_completed_exits_at_once_as_converted(ingest: Any, cart: Enrollment) -> None:
    send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed"})
    cart.refresh_from_db()
    assert (cart.status, cart.converted, cart.end_reason) == ("exited", True, "exit: Order Completed")
    assert not Timer.objects.filter(enrollment=cart, fired_at__isnull=True).exists()
    assert timers_tick(now=timezone.now() + timedelta(hours=2)) == 0
    assert not Delivery.objects.exists()


def test_no_order_within_the_hour_sends_the_push_then_sms_when_the_push_fails(ingest: Any, cart: Enrollment) -> None:
    assert timers_tick(now=timezone.now() + timedelta(minutes=30)) == 0
    assert timers_tick(now=timezone.now() + timedelta(minutes=61)) == 1
    push = Delivery.objects.get()
    assert (push.channel, push.purpose) == ("push", "marketing")
    assert push.content["title"] == "Still thinking it over, Ada?"
    assert push.content["body"] == "Your cart is waiting: 2 item(s)."
    cart.refresh_from_db()
    assert (cart.waiting_for or {})["delivery_id"] == str(push.id)

    outcome_record(delivery=push, status=DeliveryStatus.FAILED, reason="unregistered device")
    route_pending()
    sms = Delivery.objects.exclude(id=push.id).get()
    assert sms.channel == "sms"
    assert sms.idempotency_key == f"journey:{cart.id}:remind:1:sms"
    cart.refresh_from_db()
    assert (cart.waiting_for or {})["delivery_id"] == str(sms.id)
    failed = StepRun.objects.get(enrollment=cart, key=f"{cart.id}:remind:1:outcome:{push.id}:failed")
    assert failed.detail["reason"] == "unregistered device"

    outcome_record(delivery=sms, status=DeliveryStatus.SENT)
    route_pending()
    cart.refresh_from_db()
    assert (cart.status, cart.step) == (EnrollmentStatus.COMPLETED, "done")
    assert Delivery.objects.count() == 2


def test_reentry_waits_for_the_cooldown(ingest: Any, cart: Enrollment) -> None:
    send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed"})
    send(ingest, {"type": "track", "userId": "u1", "event": "Cart Abandoned"})
    assert Enrollment.objects.count() == 1
