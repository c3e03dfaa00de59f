"""The console provider: with no provider configured for a channel (embedded mode), the message
is logged, readable, and the delivery reaches `sent` with its content in the admin."""

import logging
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from channels.models import DeliveryStatus
from channels.selectors import providers_for
from channels.services.attempts import delivery_attempt
from channels.services.deliveries import deliver
from tests.channels.factories import customer_with

pytestmark = pytest.mark.django_db
PHONE = "+14155550100"
BODY = "Your cart is waiting: 2 items, 49.90 EUR"


@pytest.fixture
def console(settings: Any) -> dict[str, dict[str, str]]:
    """Embedded mode's defaults: the console stands in for unconfigured channels, and email has
    no SMTP host named (the test environment configures none for SMS or push)."""
    settings.CHANNELS_CONSOLE_UNCONFIGURED = True
    settings.CHANNELS_PROVIDERS = {**settings.CHANNELS_PROVIDERS, "smtp": {"kind": "smtp", "enabled": "false"}}
    return settings.CHANNELS_PROVIDERS


def console_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "channels.senders.console"]


def test_an_sms_without_a_provider_is_logged_and_sent(console: Any, caplog: pytest.LogCaptureFixture) -> None:
    delivery = deliver(
        channel="sms", customer_id=customer_with(phone=PHONE).id, content={"body": BODY}, idempotency_key="c1"
    )

    with caplog.at_level(logging.INFO):
        attempted = delivery_attempt(delivery_id=delivery.id)

    delivery.refresh_from_db()
    assert (attempted.status, delivery.status, delivery.provider) == ("sent", DeliveryStatus.SENT, "console")
    assert console_lines(caplog) == [
        f"console sms to {PHONE} (delivery {delivery.id}; not sent, no provider configured):\n  body: {BODY}"
    ]


def test_an_email_shows_its_subject_then_its_body(console: Any, caplog: pytest.LogCaptureFixture) -> None:
    delivery = deliver(
        channel="email",
        customer_id=customer_with(email="ada@example.com").id,
        content={"body": "Line one\nLine two", "subject": "Your cart"},
        idempotency_key="c2",
    )

    with caplog.at_level(logging.INFO):
        delivery_attempt(delivery_id=delivery.id)

    (line,) = console_lines(caplog)
    assert line.splitlines()[1:] == ["  subject: Your cart", "  body: Line one", "    Line two"]


def test_the_sent_delivery_shows_its_content_in_the_admin(console: Any, admin_client: Client) -> None:
    delivery = deliver(
        channel="sms", customer_id=customer_with(phone=PHONE).id, content={"body": BODY}, idempotency_key="c3"
    )
    delivery_attempt(delivery_id=delivery.id)

    page = admin_client.get(reverse("admin:channels_delivery_change", args=[delivery.id])).content.decode()

    assert f'<pre style="margin: 0; white-space: pre-wrap">body: {BODY}</pre>' in page
    assert '<div class="readonly">console</div>' in page


def test_a_configured_provider_is_used_and_the_console_never_fails_over_for_it(console: Any) -> None:
    console["twilio"] = {**console["twilio"], "account_sid": "AC1", "auth_token": "t", "from_number": "+15005550006"}

    assert (providers_for(channel="sms", fallback=[]), providers_for(channel="push", fallback=[])) == (
        ["twilio"],
        ["console"],
    )


def test_outside_embedded_mode_a_channel_without_a_provider_has_none(settings: Any) -> None:
    settings.CHANNELS_CONSOLE_UNCONFIGURED = False

    assert providers_for(channel="push", fallback=[]) == []
