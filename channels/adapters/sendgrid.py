"""SendGrid Event Webhook batches, signed with ECDSA (P-256, SHA-256) over timestamp + raw body.

The verification key is SendGrid's public key (base64 DER), stored as the source's webhook
secret. Each event carries sg_event_id (dedup) and, for our own mail, the delivery_id unique
argument the SMTP sender sets through X-SMTPAPI.
"""

import base64
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from django.conf import settings

from channels.adapters.base import UNDELIVERABLE, InboundResult, Outcome, Webhook, ingest, json_body, refuse_replay
from channels.adapters.identity import ids_from
from channels.selectors import customer_ids_for_message, delivery_named
from channels.services.reports import delivery_outcomes_apply
from channels.signing import SignatureError
from config.core.errors import BadRequest, Unauthorized
from profiles import facade as profiles

SIGNATURE_HEADER = "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"
TIMESTAMP_HEADER = "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"
EVENTS = {
    "delivered": "Message Delivered",
    "open": "Message Opened",
    "click": "Message Clicked",
    "bounce": "Message Bounced",
    "dropped": "Message Bounced",
    "spamreport": "Email Marked as Spam",
    "unsubscribe": "Email Unsubscribed",
}


def verify(public_key_b64: str, body: bytes, signature_b64: str, timestamp: str, *, now: float, tolerance: int) -> None:
    if not signature_b64 or not timestamp:
        raise SignatureError("SendGrid signature headers are missing")
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64))
        signature = base64.b64decode(signature_b64, validate=True)
        signed_at = int(timestamp)
    except ValueError:
        raise SignatureError("malformed SendGrid signature or key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("the SendGrid verification key is not an EC key")
    try:
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("signature does not match") from None
    if abs(now - signed_at) > tolerance:
        raise SignatureError("signature timestamp is outside the tolerance")


def outcome(event: dict[str, Any]) -> Outcome:
    return Outcome(
        kind=str(event.get("event", "")),
        delivery_id=str(event.get("delivery_id", "")),
        email=str(event.get("email", "")),
        reason=str(event.get("reason") or event.get("response") or "")[:500],
    )


def to_message(event: dict[str, Any], ids: dict[str, Any]) -> dict[str, Any] | None:
    kind = str(event.get("event", ""))
    name = EVENTS.get(kind)
    if name is None or not event.get("sg_event_id"):
        return None
    message: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": f"sendgrid:{event['sg_event_id']}",
        "properties": {
            "channel": "email",
            "provider": "sendgrid",
            "provider_event": kind,
            "delivery_id": str(event.get("delivery_id", "")),
            "sg_message_id": str(event.get("sg_message_id", "")),
            **({"url": str(event["url"])} if event.get("url") else {}),
            **({"reason": str(event.get("reason") or event.get("response"))[:500]} if kind in UNDELIVERABLE else {}),
        },
        **(ids or ids_from({"email": event.get("email")}, prefix="email")),
    }
    if isinstance(event.get("timestamp"), int):
        message["timestamp"] = datetime.fromtimestamp(event["timestamp"], UTC).isoformat()
    return message


def receive(webhook: Webhook) -> InboundResult:
    """A batch of events: ingested, and applied to the deliveries and consents they are about."""
    signature = str(webhook.meta.get(SIGNATURE_HEADER, ""))
    try:
        verify(
            webhook.secret,
            webhook.body,
            signature,
            str(webhook.meta.get(TIMESTAMP_HEADER, "")),
            now=time.time(),
            tolerance=settings.CHANNELS_WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    batch = json_body(webhook.body)
    if not isinstance(batch, list) or not all(isinstance(event, dict) for event in batch):
        raise BadRequest("body must be a JSON array of events", code="invalid_body")
    refuse_replay(webhook, signature)
    messages = []
    for event in batch:
        delivery = delivery_named(event.get("delivery_id"))
        customer = profiles.customer_profile(customer_id=delivery.customer_id) if delivery is not None else None
        ids = customer_ids_for_message(customer=customer) if customer is not None else {}
        message = to_message(event, ids)
        if message is not None:
            messages.append(message)
    result = ingest(webhook, messages)
    # Applying an outcome twice (SendGrid re-sends batches) leaves the same state behind.
    result.consent = delivery_outcomes_apply(outcomes=[outcome(event) for event in batch], source=webhook.source)
    return result
