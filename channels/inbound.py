"""The inbound webhook service: verify, refuse replays, translate, ingest, apply consent keywords."""

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings

from channels.adapters import chat, pos, sendgrid, twilio
from channels.feeds import mapped_messages
from channels.keys import webhook_signature_seen
from channels.models import WebhookProvider
from channels.selectors import customer_ids_for_message, delivery_by_provider_id, delivery_get
from channels.services.reports import delivery_outcomes_apply, delivery_status_report
from channels.services.webhook_secrets import webhook_secret_reveal
from channels.signing import SignatureError, stripe_verify, twilio_verify
from config.core import redis as tl_redis
from config.core.errors import ApplicationError, BadRequest, Conflict, Unauthorized
from profiles.contracts import SourceInfo
from profiles.ingest import event_ingest
from profiles.models import Source
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.services import consent_set
from profiles.selectors import customer_find, customer_get

STRIPE_STYLE_HEADER = "HTTP_THROUGHLINE_SIGNATURE"


@dataclass(slots=True)
class InboundResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    consent: list[str] = field(default_factory=list)


def _source(source_id: UUID) -> SourceInfo:
    row = Source.objects.filter(id=source_id).first()
    if row is None or not row.enabled:
        raise Unauthorized("unknown or disabled source", code="invalid_signature")
    return SourceInfo(
        id=row.id,
        name=row.name,
        channel=row.channel,
        enabled=row.enabled,
        identity_kinds=frozenset(row.identity_kinds or ()),
    )


def _secret(source_id: UUID, provider: str) -> str:
    try:
        return webhook_secret_reveal(source_id=source_id, provider=provider)
    except ApplicationError:
        raise Unauthorized("no webhook secret for this source", code="invalid_signature") from None


def webhook_receive(
    *, provider: str, source_id: UUID, body: bytes, meta: dict[str, Any], url: str, received_at: datetime
) -> InboundResult:
    """Verify a provider's webhook and ingest what it reports (SendGrid's also update the
    deliveries and consent they are about); 401 on a bad signature, 409 on a
    replayed one. A provider event seen before is acknowledged and stored once (its messageId)."""
    if provider not in WebhookProvider.values:
        raise BadRequest(f"unknown provider {provider!r}", code="unknown_provider")
    source = _source(source_id)
    secret = _secret(source_id, provider)
    if provider == WebhookProvider.SENDGRID:
        return _sendgrid(source, secret, body, meta, received_at=received_at)
    if provider == WebhookProvider.TWILIO:
        return _twilio(source, secret, body, meta, url=url, received_at=received_at)
    header = str(meta.get(STRIPE_STYLE_HEADER, ""))
    if not header:
        raise Unauthorized("Throughline-Signature header is missing", code="invalid_signature")
    try:
        stripe_verify(secret, body, header, now=time.time(), tolerance=settings.CHANNELS_WEBHOOK_TOLERANCE_SECONDS)
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON", code="malformed_json") from None
    if provider == WebhookProvider.MAPPED:
        # Any system's JSON: an object or a batch, through the source's field mapping.
        messages = mapped_messages(source_id=source_id, payload=payload)
        _refuse_replay(source_id, header)
        ingested = event_ingest(source=source, raw_messages=messages, call_type=None, received_at=received_at)
        return InboundResult(
            accepted=ingested.accepted, duplicates=ingested.duplicates, rejected=len(ingested.rejected)
        )
    if not isinstance(payload, dict) or not payload.get("id"):
        raise BadRequest("body must be a JSON object with an id", code="invalid_body")
    _refuse_replay(source_id, header)
    message = chat.to_message(payload) if provider == WebhookProvider.CHAT else pos.to_message(payload)
    ingested = event_ingest(source=source, raw_messages=[message], call_type=None, received_at=received_at)
    return InboundResult(accepted=ingested.accepted, duplicates=ingested.duplicates, rejected=len(ingested.rejected))


def _refuse_replay(source_id: UUID, signature: str) -> None:
    # A valid signature can be captured and sent again within the tolerance: remember each one
    # for twice the tolerance, so the copy is refused even when its timestamp is in the future.
    seen = tl_redis.client().set(
        webhook_signature_seen(str(source_id), signature),
        1,
        nx=True,
        ex=2 * settings.CHANNELS_WEBHOOK_TOLERANCE_SECONDS,
    )
    if not seen:
        raise Conflict("this signed request was already received", code="replayed")


def _sendgrid(
    source: SourceInfo, public_key: str, body: bytes, meta: dict[str, Any], *, received_at: datetime
) -> InboundResult:
    signature = str(meta.get(sendgrid.SIGNATURE_HEADER, ""))
    try:
        sendgrid.verify(
            public_key,
            body,
            signature,
            str(meta.get(sendgrid.TIMESTAMP_HEADER, "")),
            now=time.time(),
            tolerance=settings.CHANNELS_WEBHOOK_TOLERANCE_SECONDS,
        )
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    try:
        batch = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON", code="malformed_json") from None
    if not isinstance(batch, list) or not all(isinstance(event, dict) for event in batch):
        raise BadRequest("body must be a JSON array of events", code="invalid_body")
    _refuse_replay(source.id, signature)
    messages = []
    for event in batch:
        delivery = _delivery_of(event.get("delivery_id"))
        customer = customer_get(customer_id=delivery.customer_id) if delivery is not None else None
        ids = customer_ids_for_message(customer=customer) if customer is not None else {}
        message = sendgrid.to_message(event, ids)
        if message is not None:
            messages.append(message)
    ingested = event_ingest(source=source, raw_messages=messages, call_type=None, received_at=received_at)
    # Applying an outcome twice (SendGrid re-sends batches) leaves the same state behind.
    consent = delivery_outcomes_apply(outcomes=[sendgrid.outcome(event) for event in batch], source=source)
    return InboundResult(
        accepted=ingested.accepted, duplicates=ingested.duplicates, rejected=len(ingested.rejected), consent=consent
    )


def _delivery_of(value: object) -> Any:
    try:
        return delivery_get(delivery_id=UUID(str(value))) if value else None
    except ValueError:
        return None


def _twilio(
    source: SourceInfo, secret: str, body: bytes, meta: dict[str, Any], *, url: str, received_at: datetime
) -> InboundResult:
    pairs = twilio.parse(body)
    try:
        twilio_verify(secret, url, pairs, str(meta.get(twilio.SIGNATURE_HEADER, "")))
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    params = dict(pairs)
    customer = customer_find(kind="phone", value=params.get("From", ""))
    ids = customer_ids_for_message(customer=customer) if customer is not None else {}
    message = twilio.to_message(params, ids)
    if message is None:
        raise BadRequest("MessageSid and a valid From number are required", code="invalid_body")
    ingested = event_ingest(source=source, raw_messages=[message], call_type=None, received_at=received_at)
    result = InboundResult(accepted=ingested.accepted, duplicates=ingested.duplicates, rejected=len(ingested.rejected))
    word = twilio.keyword(params.get("Body", ""))
    if word in ("stop", "start") and ingested.accepted:
        person = customer_find(kind="phone", value=params["From"])
        if person is not None:
            status = "denied" if word == "stop" else "granted"
            consent_set(
                customer_id=person.id,
                choices=[ConsentChoice(purpose, "sms", status) for purpose in settings.CHANNELS_SMS_STOP_PURPOSES],
                origin="webhook",
                actor=f"webhook:twilio:{source.id}",
                source_id=source.id,
                source_label=source.name,
            )
            result.consent = [f"{purpose}/sms={status}" for purpose in settings.CHANNELS_SMS_STOP_PURPOSES]
    return result


@dataclass(frozen=True, slots=True)
class StatusResult:
    matched: bool
    delivery_id: str | None
    status: str


def twilio_status_receive(*, source_id: UUID, body: bytes, meta: dict[str, Any], url: str) -> StatusResult:
    """A Twilio status callback for an outbound SMS, signed like inbound SMS with the source's
    Twilio secret (the auth token): delivered and undelivered/failed move the delivery found by
    its MessageSid and record Message Delivered / Message Failed; in-flight statuses and unknown
    MessageSids are acknowledged without a change. 401 on a bad signature."""
    _source(source_id)
    secret = _secret(source_id, WebhookProvider.TWILIO)
    pairs = twilio.parse(body)
    try:
        twilio_verify(secret, url, pairs, str(meta.get(twilio.SIGNATURE_HEADER, "")))
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    report = twilio.status_report(dict(pairs))
    if report is None:
        raise BadRequest("MessageSid and a known MessageStatus are required", code="invalid_body")
    sid, status, error_code, _ = report
    outcome = twilio.STATUS_OUTCOMES.get(status)
    if outcome is None:
        delivery = delivery_by_provider_id(channel="sms", provider_message_id=sid)
        return StatusResult(delivery is not None, str(delivery.id) if delivery else None, status)
    reason = f"twilio {status}" + (f" (error {error_code})" if error_code else "")
    delivery = delivery_status_report(
        channel="sms",
        provider_message_id=sid,
        outcome=outcome,
        reason=reason,
        dead_address=error_code in twilio.DEAD_NUMBER_CODES,
    )
    if delivery is None:
        return StatusResult(False, None, status)
    return StatusResult(True, str(delivery.id), delivery.status)
