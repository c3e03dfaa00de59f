"""Webhooks to customer-configured URLs, signed by Throughline (config/core/signing.py)."""

import time

import orjson

from channels.retry import PermanentError
from channels.senders.base import Outgoing, http_post
from config.core.signing import SigningKeyMissing, signature_headers


def send_webhook(config: dict[str, str], message: Outgoing) -> str:
    # The URL is the customer's `webhook_url` trait, which any write key can set: the outbound
    # client refuses it when it resolves to the service's own network.
    body = orjson.dumps({"id": message.delivery_id, "content": message.content})
    try:
        signatures = signature_headers(
            config.get("signing_secret", ""), body, message_id=message.idempotency_key, timestamp=int(time.time())
        )
    except SigningKeyMissing:
        # Unsigned, a receiver could not tell our POST from anyone's: not sent.
        raise PermanentError(
            "refused: the webhook provider has no signing_secret (CHANNELS_WEBHOOK_SIGNING_SECRET is not set)"
        ) from None
    headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key, **signatures}
    http_post(message.address, body, headers, timeout=message.timeout)
    return message.delivery_id
