"""A delivery records where it goes when it is queued (its one provider and host), so a fresh
claim can leave out the deliveries to a host whose breaker is open: a host that is down costs
no claims while its breaker is open, and what was left out is claimed again at the half-open
trial."""

import time
from typing import Any

import pytest

from channels.models import Delivery, DeliveryStatus
from channels.services.attempts import deliveries_attempt, delivery_attempt
from channels.services.deliveries import deliver
from tests.channels.factories import customer_with
from tests.channels.servers import HttpSink

pytestmark = pytest.mark.django_db
PHONE = "+14155550100"


def _hook(customer: Any, key: str) -> Delivery:
    return deliver(channel="webhook", customer_id=customer.id, content={"k": key}, idempotency_key=key)


def _host(sink: HttpSink) -> str:
    return sink.url.removeprefix("http://")


@pytest.fixture
def down(providers: Any, second_sink: HttpSink) -> Any:
    """A customer whose webhook host answers 503 and whose breaker opened after 3 failures."""
    second_sink.default = (503, {}, b"down")
    customer = customer_with(user_id="down", traits={"webhook_url": f"{second_sink.url}/hook"})
    for n in range(3):
        delivery_attempt(delivery_id=_hook(customer, f"trip-{n}").id)
    assert len(second_sink.requests) == 3
    return customer


@pytest.fixture
def up(providers: Any, http_sink: HttpSink) -> Any:
    return customer_with(user_id="up", traits={"webhook_url": f"{http_sink.url}/hook"})


def _drain(woken: list[float]) -> dict[Any, Any]:
    """What a draining send task does: claim up to 10 never-tried deliveries."""
    return deliveries_attempt(delivery_ids=[], fresh=10, only_fresh=True, on_parked=woken.append)


def test_the_destination_is_recorded_when_queued(providers: Any, up: Any, http_sink: HttpSink) -> None:
    sms_customer = customer_with(user_id="s", phone=PHONE)

    webhook = _hook(up, "w")
    two_providers = deliver(channel="sms", customer_id=sms_customer.id, content={"body": "Hi"}, idempotency_key="s")
    providers["sms_secondary"]["enabled"] = "false"
    one_provider = deliver(channel="sms", customer_id=sms_customer.id, content={"body": "Hi"}, idempotency_key="s1")
    no_url = deliver(channel="webhook", customer_id=customer_with(user_id="n").id, content={}, idempotency_key="n")

    assert webhook.destination == f"webhook@{_host(http_sink)}"
    assert one_provider.destination == f"twilio@{_host(http_sink)}"
    assert (two_providers.destination, no_url.destination) == ("", "")


def test_a_claim_leaves_out_deliveries_to_a_host_whose_breaker_is_open(
    down: Any, up: Any, http_sink: HttpSink, second_sink: HttpSink
) -> None:
    parked = [_hook(down, f"down-{n}") for n in range(3)]
    healthy = [_hook(up, f"up-{n}") for n in range(3)]
    woken: list[float] = []

    results = _drain(woken)
    again = _drain(woken)

    assert set(results) == {delivery.id for delivery in healthy}
    assert {result.status for result in results.values()} == {DeliveryStatus.SENT}
    assert again == {}
    rows = Delivery.objects.filter(id__in=[delivery.id for delivery in parked])
    assert {(row.status, row.attempts, row.last_error) for row in rows} == {(DeliveryStatus.QUEUED, 0, "")}
    assert (len(second_sink.requests), len(http_sink.requests)) == (3, 3)
    # One wake-up for the opening, at its half-open trial (the 60 s reset), not one per claim.
    assert len(woken) == 1 and 58 <= woken[0] <= 60


def test_those_left_out_are_sent_once_the_breaker_lets_its_trial_through(
    settings: Any, providers: Any, second_sink: HttpSink
) -> None:
    settings.CHANNELS_BREAKER_RESET_SECONDS = 0.5
    second_sink.default = (503, {}, b"down")
    customer = customer_with(user_id="down", traits={"webhook_url": f"{second_sink.url}/hook"})
    for n in range(3):
        delivery_attempt(delivery_id=_hook(customer, f"trip-{n}").id)
    parked = [_hook(customer, f"down-{n}") for n in range(3)]
    woken: list[float] = []
    assert _drain(woken) == {}
    second_sink.default = (200, {}, b"")

    time.sleep(woken[0])
    results = _drain(woken)

    assert {results[delivery.id].status for delivery in parked} == {DeliveryStatus.SENT}
    assert len(second_sink.requests) == 3 + 3


def test_a_delivery_with_a_healthy_fallback_is_not_held_back(
    providers: Any, http_sink: HttpSink, second_sink: HttpSink
) -> None:
    # twilio (http_sink) is down and its breaker open; sms_secondary (second_sink) is healthy.
    http_sink.default = (503, {}, b"down")
    customer = customer_with(user_id="u1", phone=PHONE)
    providers["sms_secondary"]["enabled"] = "false"
    for n in range(3):
        trip = deliver(channel="sms", customer_id=customer.id, content={"body": "x"}, idempotency_key=f"t{n}")
        delivery_attempt(delivery_id=trip.id)
    providers["sms_secondary"]["enabled"] = "true"
    routed = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="routed")

    results = _drain([])

    assert results[routed.id].status == DeliveryStatus.SENT
    assert Delivery.objects.get(id=routed.id).provider == "sms_secondary"
    assert len(http_sink.requests) == 3  # the open breaker refused without a request


def test_a_delivery_queued_without_a_hint_is_still_claimed_and_parked_as_before(
    down: Any, second_sink: HttpSink
) -> None:
    # Queued before the column existed: nothing to leave it out by, so the claim takes it and
    # the open breaker refuses it without a request, giving the attempt back.
    delivery = _hook(down, "old")
    Delivery.objects.filter(id=delivery.id).update(destination="")

    results = _drain([])

    row = Delivery.objects.get(id=delivery.id)
    assert results[delivery.id].status == DeliveryStatus.QUEUED and results[delivery.id].retry_in is not None
    assert (row.status, row.attempts, len(second_sink.requests)) == (DeliveryStatus.QUEUED, 0, 3)


def test_a_given_delivery_never_claimed_waits_for_the_trial_by_its_hint(down: Any, second_sink: HttpSink) -> None:
    delivery = _hook(down, "given")

    result = delivery_attempt(delivery_id=delivery.id)

    row = Delivery.objects.get(id=delivery.id)
    assert result.status == DeliveryStatus.QUEUED and result.retry_in is not None and 58 <= result.retry_in <= 61.5
    assert (row.attempts, row.updated_at, len(second_sink.requests)) == (0, delivery.updated_at, 3)
