"""Webhooks to customer-configured URLs, signed by Throughline the Stripe way."""

import time

import orjson

from channels.senders.base import Outgoing, http_post
from channels.signing import stripe_sign

SIGNATURE_HEADER = "Throughline-Signature"


def send_webhook(config: dict[str, str], message: Outgoing) -> str:
    body = orjson.dumps({"id": message.delivery_id, "content": message.content})
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: stripe_sign(config["signing_secret"], body, int(time.time())),
        "Idempotency-Key": message.idempotency_key,
    }
    http_post(message.address, body, headers, timeout=message.timeout)
    return message.delivery_id
