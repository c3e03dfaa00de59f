from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from channels import keys
from channels.breaker import breakers_reset
from channels.selectors import contact_policy_forget
from channels.senders.push import access_tokens_forget
from config.core import redis as tl_redis
from tests.channels.servers import HttpSink, SmtpRecorder, start_http_sink, start_smtp


def _forget_send_state() -> None:
    """The send marker and early status reports a previous test left in the test Redis."""
    if not tl_redis.is_configured():
        return
    client = tl_redis.client()
    for key in [keys.send_pending(), *client.scan_iter(match=keys.status_early("*", "")[:-32] + "*")]:
        client.delete(key)


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """Per-process state of the channels app starts empty in every test: breakers, the push
    access token, the cached contact policy, the send marker and early status reports."""
    _forget_send_state()
    breakers_reset()
    access_tokens_forget()
    contact_policy_forget()
    yield
    breakers_reset()
    access_tokens_forget()
    contact_policy_forget()


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = start_http_sink()
    yield sink
    sink.stop()


@pytest.fixture
def second_sink() -> Iterator[HttpSink]:
    sink = start_http_sink()
    yield sink
    sink.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, SmtpRecorder]]:
    controller, recorder = start_smtp()
    yield controller, recorder
    controller.stop()


@pytest.fixture
def providers(settings: Any, http_sink: HttpSink, second_sink: HttpSink) -> dict[str, dict[str, str]]:
    """Every provider pointed at the local stand-ins: twilio at http_sink, the secondary SMS
    provider at second_sink."""
    settings.CHANNELS_PROVIDERS = {
        "twilio": {
            "kind": "twilio",
            "base_url": http_sink.url,
            "account_sid": "AC00000000000000000000000000000001",
            "auth_token": "primary-token",
            "from_number": "+15005550006",
        },
        "sms_secondary": {
            "kind": "twilio",
            "base_url": second_sink.url,
            "account_sid": "AC00000000000000000000000000000002",
            "auth_token": "secondary-token",
            "from_number": "+15005550007",
        },
        "smtp": {"kind": "smtp", "host": "127.0.0.1", "port": "1", "from_email": "hello@throughline.test"},
        "webhook": {"kind": "webhook", "signing_secret": "whsec_test"},
    }
    settings.CHANNELS_SEND_TIMEOUT_SECONDS = 2.0
    settings.CHANNELS_MAX_ATTEMPTS = 3
    settings.CHANNELS_BREAKER_FAIL_MAX = 3
    settings.CHANNELS_BREAKER_RESET_SECONDS = 60.0
    return settings.CHANNELS_PROVIDERS
