"""The signatures on the webhooks Throughline sends, pure: no Django, no ORM.

Every outbound webhook (the webhook channel, journey webhook steps) carries two signatures of the
same body, keyed with the same secret's UTF-8 bytes:
- `Throughline-Signature: t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<raw body>">`, the Stripe scheme
  (also what chat and POS providers send us: channels.signing verifies it with `stripe_sign`);
- the Standard Webhooks headers `webhook-id` (the idempotency key: the same on every retry),
  `webhook-timestamp` (the same <t>) and `webhook-signature: v1,<base64 HMAC-SHA256 over
  "<id>.<t>.<raw body>">`, which the Standard Webhooks libraries verify when given the secret as
  `whsec_` followed by the base64 of its UTF-8 bytes.

An empty secret is refused (SigningKeyMissing): an HMAC keyed with "" can be computed by anyone,
so a receiver could not tell Throughline's POST from a forgery.
"""

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "Throughline-Signature"


class SigningKeyMissing(ValueError):
    """The signing secret is empty: nothing is signed with it."""


def _key(secret: str) -> bytes:
    if not secret:
        raise SigningKeyMissing("the signing secret is empty")
    return secret.encode()


def stripe_sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def standard_sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def signature_headers(secret: str, body: bytes, *, message_id: str, timestamp: int) -> dict[str, str]:
    """The signature headers of one outbound webhook; raises SigningKeyMissing on an empty secret."""
    return {
        SIGNATURE_HEADER: stripe_sign(secret, body, timestamp),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_sign(secret, message_id, timestamp, body),
    }
