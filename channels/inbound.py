"""The inbound webhook service: find the source and its secret, then hand the request to the
provider's adapter (RECEIVERS), which verifies it, refuses a replay, translates and ingests."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from channels.adapters import chat, mapped, pos, sendgrid, twilio
from channels.adapters.base import InboundResult, Receiver, Webhook, signed_json
from channels.adapters.twilio import StatusResult
from channels.models import WebhookProvider
from channels.services.webhook_secrets import webhook_secret_reveal
from config.core.errors import ApplicationError, BadRequest, Unauthorized
from profiles import facade as profiles
from profiles.contracts import SourceInfo

# One entry per provider, as channels.senders.SENDERS has one per sender kind. A provider is one
# module in channels/adapters and its line here (and its name among WebhookProvider's choices,
# which a source's secret is stored under).
RECEIVERS: dict[str, Receiver] = {
    WebhookProvider.TWILIO: twilio.receive,
    WebhookProvider.SENDGRID: sendgrid.receive,
    WebhookProvider.CHAT: signed_json(chat.to_message),
    WebhookProvider.POS: signed_json(pos.to_message),
    WebhookProvider.MAPPED: mapped.receive,
}


def _source(source_id: UUID) -> SourceInfo:
    source = profiles.source_info(source_id=source_id)
    if source is None or not source.enabled:
        raise Unauthorized("unknown or disabled source", code="invalid_signature")
    return source


def _secret(source_id: UUID, provider: str) -> str:
    try:
        return webhook_secret_reveal(source_id=source_id, provider=provider)
    except ApplicationError:
        raise Unauthorized("no webhook secret for this source", code="invalid_signature") from None


def webhook_receive(
    *, provider: str, source_id: UUID, body: bytes, meta: Mapping[str, Any], url: str, received_at: datetime
) -> InboundResult:
    """Verify a provider's webhook and ingest what it reports (SendGrid's also update the
    deliveries and consent they are about); 401 on a bad signature, 409 on a
    replayed one. A provider event seen before is acknowledged and stored once (its messageId)."""
    receiver = RECEIVERS.get(provider)
    if receiver is None:
        raise BadRequest(f"unknown provider {provider!r}", code="unknown_provider")
    source = _source(source_id)
    secret = _secret(source_id, provider)
    return receiver(Webhook(source=source, secret=secret, body=body, meta=meta, url=url, received_at=received_at))


def twilio_status_receive(*, source_id: UUID, body: bytes, meta: Mapping[str, Any], url: str) -> StatusResult:
    """A Twilio status callback for an outbound SMS, signed like inbound SMS with the source's
    Twilio secret (the auth token): delivered and undelivered/failed move the delivery found by
    its MessageSid and record Message Delivered / Message Failed; in-flight statuses and unknown
    MessageSids are acknowledged without a change. 401 on a bad signature."""
    _source(source_id)
    return twilio.status_receive(secret=_secret(source_id, WebhookProvider.TWILIO), body=body, meta=meta, url=url)
