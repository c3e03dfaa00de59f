"""Any system's JSON (an object or a batch), signed Stripe-style, turned into events by the
source's field mapping (channels.adapters.mapping; 400 `no_mapping` without one)."""

from channels.adapters.base import InboundResult, Webhook, ingest, refuse_replay, stripe_signed
from channels.feeds import mapped_messages


def receive(webhook: Webhook) -> InboundResult:
    header, payload = stripe_signed(webhook)
    messages = mapped_messages(source_id=webhook.source.id, payload=payload)
    refuse_replay(webhook, header)
    return ingest(webhook, messages)
