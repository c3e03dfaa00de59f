"""Webhooks to customer-configured URLs, signed by Throughline the Stripe way."""

import time

import orjson
from django.conf import settings

from channels.retry import PermanentError
from channels.senders.base import Outgoing, http_post
from channels.signing import stripe_sign
from config.core.netguard import ForbiddenDestination, destination_check

SIGNATURE_HEADER = "Throughline-Signature"


def send_webhook(config: dict[str, str], message: Outgoing) -> str:
    # The URL is the customer's `webhook_url` trait, which any write key can set: never let it
    # reach the service's own network.
    try:
        destination_check(message.address, allow_private=settings.OUTBOUND_ALLOW_PRIVATE_HOSTS)
    except ForbiddenDestination as refused:
        raise PermanentError(f"refused: {refused}") from None
    body = orjson.dumps({"id": message.delivery_id, "content": message.content})
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: stripe_sign(config["signing_secret"], body, int(time.time())),
        "Idempotency-Key": message.idempotency_key,
    }
    http_post(message.address, body, headers, timeout=message.timeout)
    return message.delivery_id
