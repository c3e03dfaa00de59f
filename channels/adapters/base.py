"""What every inbound adapter shares: the webhook it receives, the result it returns, the result
types it hands to the channels services, and the steps of a Throughline-signed JSON webhook."""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings

from channels.keys import webhook_signature_seen
from channels.signing import SignatureError, stripe_verify
from config.core import redis as tl_redis
from config.core.errors import BadRequest, Conflict, Unauthorized
from profiles import facade as profiles
from profiles.contracts import SourceInfo

# The kinds of an email provider's report (SendGrid's event names) that change a delivery or a
# consent: a bounce or a drop makes the address undeliverable, a spam report or an unsubscribe
# denies email consent. Other kinds (opens, clicks) are events only.
DELIVERED = "delivered"
UNDELIVERABLE = frozenset({"bounce", "dropped"})
OPT_OUT = frozenset({"spamreport", "unsubscribe"})

STRIPE_STYLE_HEADER = "HTTP_THROUGHLINE_SIGNATURE"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A provider's report on one message: its kind, the delivery it names (our delivery_id,
    when it carries one), the address and the provider's reason."""

    kind: str
    delivery_id: str
    email: str
    reason: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """A provider's request to a source's webhook, with the source's secret for that provider;
    nothing in it is verified yet."""

    source: SourceInfo
    secret: str
    body: bytes
    meta: Mapping[str, Any]
    url: str
    received_at: datetime


@dataclass(slots=True)
class InboundResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    consent: list[str] = field(default_factory=list)


# An adapter's entry point: verify the webhook, refuse a replay, ingest what it reports.
Receiver = Callable[[Webhook], InboundResult]


def ingest(webhook: Webhook, messages: list[dict[str, Any]]) -> InboundResult:
    """Ingest the messages a webhook reported, under its source."""
    ingested = profiles.event_ingest(
        source=webhook.source, raw_messages=messages, call_type=None, received_at=webhook.received_at
    )
    return InboundResult(accepted=ingested.accepted, duplicates=ingested.duplicates, rejected=len(ingested.rejected))


def json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON", code="malformed_json") from None


def refuse_replay(webhook: Webhook, signature: str) -> None:
    # A valid signature can be captured and sent again within the tolerance: remember each one
    # for twice the tolerance, so the copy is refused even when its timestamp is in the future.
    seen = tl_redis.client().set(
        webhook_signature_seen(str(webhook.source.id), signature),
        1,
        nx=True,
        ex=2 * settings.CHANNELS_WEBHOOK_TOLERANCE_SECONDS,
    )
    if not seen:
        raise Conflict("this signed request was already received", code="replayed")


def stripe_signed(webhook: Webhook) -> tuple[str, Any]:
    """Verify a Throughline-Signature (Stripe-style) webhook; its signature header and JSON body."""
    header = str(webhook.meta.get(STRIPE_STYLE_HEADER, ""))
    if not header:
        raise Unauthorized("Throughline-Signature header is missing", code="invalid_signature")
    try:
        stripe_verify(
            webhook.secret,
            webhook.body,
            header,
            now=time.time(),
            tolerance=settings.CHANNELS_WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    return header, json_body(webhook.body)


def signed_json(to_message: Callable[[dict[str, Any]], dict[str, Any]]) -> Receiver:
    """The receiver of a Stripe-style signed webhook whose body is one provider event, a JSON
    object with an id, that `to_message` (a pure translation) turns into one message."""

    def receive(webhook: Webhook) -> InboundResult:
        header, payload = stripe_signed(webhook)
        if not isinstance(payload, dict) or not payload.get("id"):
            raise BadRequest("body must be a JSON object with an id", code="invalid_body")
        refuse_replay(webhook, header)
        return ingest(webhook, [to_message(payload)])

    return receive
