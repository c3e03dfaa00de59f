"""Deliveries and breakers on /metrics: outcomes by channel, provider and status, and the
breaker gauge while a provider is down (a real local HTTP server answering 503)."""

from typing import Any

import pytest

from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from tests.channels.factories import customer_with
from tests.channels.servers import HttpSink
from tests.observability.scrape import scrape, value

pytestmark = pytest.mark.django_db
PHONE = "+14155550100"


def _attempt(customer_id: Any, key: str) -> str:
    delivery = deliver(channel="sms", customer_id=customer_id, content={"body": "Hi"}, idempotency_key=key)
    return delivery_attempt(delivery_id=delivery.id).status


def test_sent_retried_and_dead_deliveries_are_counted(providers: Any, http_sink: HttpSink, client: Any) -> None:
    providers["sms_secondary"]["enabled"] = "false"
    customer = customer_with(user_id="u1", phone=PHONE)
    before = scrape(client)

    assert _attempt(customer.id, "ok") == "sent"
    http_sink.default = (503, {}, b"down")
    assert [_attempt(customer.id, "down") for _ in range(3)] == ["queued", "queued", "dead"]
    after = scrape(client)

    def moved(**labels: str) -> float:
        name = "throughline_deliveries_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(channel="sms", provider="twilio", status="sent") == 1
    assert moved(channel="sms", provider="", status="retrying") == 2
    assert moved(channel="sms", provider="", status="dead") == 1


def test_the_breaker_gauge_is_1_while_the_provider_breaker_is_open(
    providers: Any, http_sink: HttpSink, client: Any
) -> None:
    providers["sms_secondary"]["enabled"] = "false"
    http_sink.default = (500, {}, b"boom")
    customer = customer_with(user_id="u1", phone=PHONE)
    assert value(scrape(client), "throughline_circuit_breaker_open", provider="twilio") == 0

    for n in range(3):
        _attempt(customer.id, f"trip-{n}")

    assert value(scrape(client), "throughline_circuit_breaker_open", provider="twilio") == 1
