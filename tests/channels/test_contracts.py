"""The channels contract the journey engine uses: deliver, channels_available, contact_check,
and the contact policy enforced again when the send task runs."""

from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import uuid4

import pytest
from django.utils import timezone

from channels import contracts
from channels.models import Delivery, DeliveryStatus, UndeliverableAddress
from channels.selectors import contact_policy_forget
from channels.services.attempts import delivery_attempt
from channels.services.contact_policy import contact_policy_set
from config.core.errors import BadRequest
from profiles.models import Event
from tests.channels.factories import customer_with, deny, grant
from tests.channels.servers import HttpSink

pytestmark = pytest.mark.django_db
PHONE = "+14155550100"
THREE_MARKETING_A_WEEK = [{"purpose": "marketing", "channel": "*", "max": 3, "window": {"days": 7}}]


@pytest.fixture(autouse=True)
def _fresh_policy() -> Any:
    contact_policy_forget()
    yield
    contact_policy_forget()


def _marketable(**kwargs: Any) -> Any:
    customer = customer_with(**kwargs)
    grant(customer, purpose="marketing")
    return customer


def _sms(customer_id: Any, key: str, **kwargs: Any) -> contracts.DeliveryRef:
    return contracts.deliver(
        channel="sms", customer_id=customer_id, content={"body": "Hi"}, idempotency_key=key, **kwargs
    )


def _sent_marketing(customer_id: Any, count: int, *, days_ago: float = 1) -> None:
    when = timezone.now() - timedelta(days=days_ago)
    for index in range(count):
        delivery = Delivery.objects.create(
            idempotency_key=f"past-{customer_id}-{index}-{days_ago}",
            channel="email",
            purpose="marketing",
            customer_id=customer_id,
            status=DeliveryStatus.DELIVERED,
            queued_at=when,
            sent_at=when,
        )
        Delivery.objects.filter(id=delivery.id).update(created_at=when)


def test_deliver_returns_a_frozen_ref_and_one_delivery_per_key(providers: Any) -> None:
    customer = _marketable(user_id="u1", phone=PHONE)

    first = _sms(customer.id, "j:1:remind:0:sms", purpose="marketing")
    again = _sms(customer.id, "j:1:remind:0:sms", purpose="marketing")

    assert (first, first.status, first.channel) == (again, "queued", "sms")
    with pytest.raises(AttributeError):
        first.status = "sent"  # type: ignore[misc]


def test_deliver_refuses_an_unknown_priority(providers: Any) -> None:
    customer = customer_with(user_id="u1", phone=PHONE)

    with pytest.raises(BadRequest):
        _sms(customer.id, "k", priority="urgent")


def test_channels_available_says_why_not(providers: Any) -> None:
    customer = _marketable(user_id="u1", phone=PHONE, email="ada@example.com", traits={"push_token": "tok-1"})
    deny(customer, purpose="marketing", channel="email")
    UndeliverableAddress.objects.create(channel="sms", address=PHONE, reason="bounce")

    answer = contracts.channels_available(
        customer_id=customer.id, channels=["push", "sms", "email", "webhook", "fax"], purpose="marketing"
    )

    assert answer == {
        "push": "no_provider",
        "sms": "undeliverable",
        "email": "no_consent",
        "webhook": "no_address",
        "fax": "unsupported",
    }


def test_channels_available_for_a_reachable_customer(providers: Any) -> None:
    customer = _marketable(user_id="u1", phone=PHONE)

    assert contracts.channels_available(customer_id=customer.id, channels=["sms"], purpose="marketing") == {"sms": None}


def test_contact_check_counts_sent_deliveries_across_channels() -> None:
    contact_policy_set(caps=THREE_MARKETING_A_WEEK)
    customer = customer_with(user_id="u1")
    _sent_marketing(customer.id, 3, days_ago=2)
    _sent_marketing(customer.id, 5, days_ago=9)

    verdict = contracts.contact_check(customer_id=customer.id, channel="sms", purpose="marketing")

    assert (verdict.allowed, verdict.reason) == (False, "frequency_cap")
    assert verdict.retry_at is not None
    assert timedelta(days=4, hours=23) < verdict.retry_at - timezone.now() <= timedelta(days=5)
    assert contracts.contact_check(customer_id=customer.id, channel="sms", purpose="transactional").allowed


def test_contact_check_counts_profiles_merged_into_the_customer() -> None:
    contact_policy_set(caps=THREE_MARKETING_A_WEEK)
    survivor = customer_with(user_id="u1")
    merged = customer_with(user_id="u2")
    merged.merged_into = survivor
    merged.save(update_fields=["merged_into"])
    _sent_marketing(merged.id, 3)

    assert contracts.contact_check(customer_id=survivor.id, channel="email", purpose="marketing").reason == (
        "frequency_cap"
    )


def test_quiet_hours_use_the_timezone_trait_and_retry_when_they_end() -> None:
    contact_policy_set(quiet_start=time(21, 0), quiet_end=time(8, 0), fallback_timezone="Europe/London")
    tokyo = customer_with(user_id="u1", traits={"timezone": "Asia/Tokyo"})
    nowhere = customer_with(user_id="u2", traits={"timezone": "Not/AZone"})
    at = datetime(2026, 6, 1, 13, 0, tzinfo=UTC)  # 22:00 in Tokyo, 14:00 in London

    verdicts = contracts.contact_check_many(
        customer_ids=[tokyo.id, nowhere.id], channel="push", purpose="marketing", at=at
    )

    assert (verdicts[tokyo.id].reason, verdicts[tokyo.id].retry_at) == (
        "quiet_hours",
        datetime(2026, 6, 1, 23, 0, tzinfo=UTC),
    )
    assert verdicts[nowhere.id].allowed


def test_contact_check_refuses_bad_input() -> None:
    with pytest.raises(BadRequest):
        contracts.contact_check(customer_id=uuid4(), channel="fax", purpose="marketing")
    with pytest.raises(BadRequest):
        contracts.contact_check(customer_id=uuid4(), channel="sms", purpose="marketing", at=datetime(2026, 1, 1))


def test_the_send_task_skips_a_capped_delivery_and_records_why(providers: Any, http_sink: HttpSink) -> None:
    customer = _marketable(user_id="u1", phone=PHONE)
    ref = _sms(customer.id, "capped", purpose="marketing")
    contact_policy_set(caps=THREE_MARKETING_A_WEEK)
    _sent_marketing(customer.id, 3)

    assert delivery_attempt(delivery_id=ref.id).status == DeliveryStatus.SKIPPED

    assert http_sink.requests == []
    assert Delivery.objects.get(id=ref.id).last_error.startswith("contact policy frequency_cap")
    event = Event.objects.get(customer_id=customer.id, name="Message Failed")
    assert (event.properties["skipped"], event.properties["policy"]) == (True, "frequency_cap")


def test_the_send_task_counts_only_what_went_out_before_it(providers: Any, http_sink: HttpSink) -> None:
    contact_policy_set(caps=[{"purpose": "marketing", "channel": "sms", "max": 1, "window": {"hours": 1}}])
    customer = _marketable(user_id="u1", phone=PHONE)
    first = _sms(customer.id, "m1", purpose="marketing")
    second = _sms(customer.id, "m2", purpose="marketing")

    statuses = [delivery_attempt(delivery_id=first.id).status, delivery_attempt(delivery_id=second.id).status]

    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.SKIPPED]
    assert len(http_sink.requests) == 1


def test_a_high_priority_delivery_passes_a_full_cap(providers: Any, http_sink: HttpSink) -> None:
    contact_policy_set(caps=THREE_MARKETING_A_WEEK)
    customer = _marketable(user_id="u1", phone=PHONE)
    _sent_marketing(customer.id, 3)
    ref = _sms(customer.id, "vip", purpose="marketing", priority="high")

    assert delivery_attempt(delivery_id=ref.id).status == DeliveryStatus.SENT


def test_quiet_hours_skip_at_send_time(providers: Any, http_sink: HttpSink) -> None:
    now = timezone.now().astimezone(UTC)
    contact_policy_set(
        quiet_start=(now - timedelta(hours=1)).time().replace(microsecond=0),
        quiet_end=(now + timedelta(hours=1)).time().replace(microsecond=0),
    )
    customer = _marketable(user_id="u1", phone=PHONE)
    ref = _sms(customer.id, "night", purpose="marketing")

    assert delivery_attempt(delivery_id=ref.id).status == DeliveryStatus.SKIPPED
    assert "quiet_hours" in Delivery.objects.get(id=ref.id).last_error


def test_a_policy_with_bad_caps_is_refused() -> None:
    with pytest.raises(BadRequest):
        contact_policy_set(caps=[{"purpose": "marketing", "max": "3", "window": {"days": 1}}])


def test_a_twilio_provider_without_credentials_is_not_offered(providers: Any, settings: Any) -> None:
    settings.CHANNELS_PROVIDERS = {
        **providers,
        "twilio": {**providers["twilio"], "account_sid": "", "auth_token": ""},
        "sms_secondary": {**providers["sms_secondary"], "enabled": "false"},
    }
    customer = _marketable(user_id="u1", phone=PHONE)

    assert contracts.channels_available(customer_id=customer.id, channels=["sms"], purpose="marketing") == {
        "sms": "no_provider"
    }
