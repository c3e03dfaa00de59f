"""Inbound webhook signature schemes, pure: no Django, no ORM.

Stripe style (what chat and POS providers send, and what Throughline signs with:
config/core/signing.py): `t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<raw body>">`. Twilio: base64
HMAC-SHA1 keyed with the auth token over the full URL followed by the POST parameters sorted by
name, each name immediately followed by its value.
"""

import base64
import hashlib
import hmac
from collections.abc import Iterable

from config.core.signing import stripe_sign


class SignatureError(Exception):
    """Missing, malformed, wrong or stale signature."""


def stripe_verify(secret: str, body: bytes, header: str, *, now: float, tolerance: int) -> int:
    """Return the signed timestamp, or raise SignatureError."""
    if not secret:
        raise SignatureError("no secret to verify the signature with")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header needs t= and v1=")
    expected = stripe_sign(secret, body, timestamp).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match")
    if abs(now - timestamp) > tolerance:
        raise SignatureError("signature timestamp is outside the tolerance")
    return timestamp


def twilio_sign(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    payload = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def twilio_verify(auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str) -> None:
    if not signature:
        raise SignatureError("X-Twilio-Signature is missing")
    if not hmac.compare_digest(twilio_sign(auth_token, url, params), signature):
        raise SignatureError("signature does not match")
