"""The pure retry policy and signature schemes."""

import random
from typing import Any

import pytest

from channels.retry import PermanentError, TransientError, backoff_seconds, classify_status
from channels.signing import SignatureError, stripe_verify, twilio_sign, twilio_verify
from config.core.signing import SigningKeyMissing, signature_headers, stripe_sign


@pytest.mark.parametrize(("status", "kind"), [(500, TransientError), (503, TransientError), (429, TransientError)])
def test_5xx_and_429_are_transient(status: int, kind: type) -> None:
    assert isinstance(classify_status(status, "x", None), kind)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    assert isinstance(classify_status(status, "x", None), PermanentError)


def test_backoff_doubles_within_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_seconds(attempt, base=2, cap=20, rng=rng) for attempt in range(1, 7)]

    assert [1 <= delays[0] <= 2, 2 <= delays[1] <= 4, 4 <= delays[2] <= 8, 10 <= delays[5] <= 20] == [True] * 4


def test_backoff_waits_at_least_retry_after() -> None:
    assert backoff_seconds(1, base=2, cap=600, retry_after=90) >= 90


def test_stripe_signature_round_trips() -> None:
    header = stripe_sign("s", b"{}", 1000)

    assert stripe_verify("s", b"{}", header, now=1000, tolerance=300) == 1000


def test_stripe_signature_outside_tolerance_is_refused() -> None:
    with pytest.raises(SignatureError):
        stripe_verify("s", b"{}", stripe_sign("s", b"{}", 1000), now=1301, tolerance=300)


@pytest.mark.parametrize(
    "sign",
    [
        lambda: stripe_sign("", b"{}", 1000),
        lambda: signature_headers("", b"{}", message_id="k1", timestamp=1000),
    ],
    ids=["stripe", "headers"],
)
def test_signing_with_an_empty_key_is_refused(sign: Any) -> None:
    with pytest.raises(SigningKeyMissing):
        sign()


def test_verifying_with_an_empty_key_is_a_signature_error() -> None:
    with pytest.raises(SignatureError):
        stripe_verify("", b"{}", "t=1000,v1=00", now=1000, tolerance=300)


def test_twilio_signature_covers_url_and_sorted_params() -> None:
    url = "https://example.com/v1/webhooks/twilio/x"
    signature = twilio_sign("token", url, [("b", "2"), ("a", "1")])

    twilio_verify("token", url, [("a", "1"), ("b", "2")], signature)
    with pytest.raises(SignatureError):
        twilio_verify("token", url + "?x=1", [("a", "1"), ("b", "2")], signature)
