"""Twilio inbound SMS and status callbacks: form-encoded, signed with X-Twilio-Signature (see
channels.signing) by the source's Twilio auth token."""

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from channels.adapters.base import InboundResult, Webhook, ingest
from channels.selectors import customer_ids_for_message, delivery_by_provider_id
from channels.services.reports import delivery_status_report
from channels.signing import SignatureError, twilio_verify
from config.core.errors import BadRequest, Unauthorized
from profiles import facade as profiles

SIGNATURE_HEADER = "HTTP_X_TWILIO_SIGNATURE"
OPT_OUT = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
OPT_IN = {"START", "YES", "UNSTOP"}
HELP = {"HELP", "INFO"}


def parse(body: bytes) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def keyword(text: str) -> str | None:
    """Twilio's advanced opt-out keywords: the whole message, any case, trimmed."""
    word = text.strip().upper()
    if word in OPT_OUT:
        return "stop"
    if word in OPT_IN:
        return "start"
    if word in HELP:
        return "help"
    return None


def to_message(params: dict[str, str], ids: dict[str, Any]) -> dict[str, Any] | None:
    """The inbound SMS as a track message; None when it has no MessageSid or sender."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    phone = profiles.normalize_phone(params.get("From", ""))
    if not sid or not phone:
        return None
    body = params.get("Body", "")
    context = dict(ids.pop("context", {}))
    context["traits"] = {**context.get("traits", {}), "phone": phone}
    return {
        "type": "track",
        "event": "SMS Received",
        "messageId": f"twilio:{sid}",
        "properties": {
            "message_sid": sid,
            "body": body[:1600],
            "to": params.get("To", ""),
            "keyword": keyword(body),
            "num_media": params.get("NumMedia", "0"),
        },
        "context": context,
        **(ids or {"anonymousId": f"sms:{phone}"}),
    }


# --- status callbacks (StatusCallback of an outbound message) ------------------------------------
# Twilio posts MessageSid, MessageStatus (queued, sending, sent, delivered, undelivered, failed;
# read for WhatsApp) and, on failure, ErrorCode. Only the outcomes change a delivery.
STATUS_OUTCOMES = {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}
STATUS_IN_FLIGHT = frozenset({"accepted", "scheduled", "queued", "sending", "sent", "receiving", "received", "read"})
# Error codes that say the number itself cannot receive SMS: later deliveries to it are skipped.
# 30005 unknown destination, 30006 landline or unreachable carrier, 21211/21614 invalid or not mobile.
DEAD_NUMBER_CODES = frozenset({"30005", "30006", "21211", "21614"})


def status_report(params: dict[str, str]) -> tuple[str, str, str] | None:
    """(MessageSid, MessageStatus, ErrorCode) of a status callback; None when it is not one."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid or len(sid) > 64 or (status not in STATUS_OUTCOMES and status not in STATUS_IN_FLIGHT):
        return None
    return sid, status, (params.get("ErrorCode") or "").strip()[:16]


def _verified(secret: str, body: bytes, meta: Mapping[str, Any], url: str) -> dict[str, str]:
    pairs = parse(body)
    try:
        twilio_verify(secret, url, pairs, str(meta.get(SIGNATURE_HEADER, "")))
    except SignatureError as error:
        raise Unauthorized(str(error), code="invalid_signature") from None
    return dict(pairs)


def receive(webhook: Webhook) -> InboundResult:
    """An inbound SMS: ingested; STOP and START keywords deny or grant SMS consent."""
    params = _verified(webhook.secret, webhook.body, webhook.meta, webhook.url)
    customer = profiles.customer_find(kind="phone", value=params.get("From", ""))
    ids = customer_ids_for_message(customer=customer) if customer is not None else {}
    message = to_message(params, ids)
    if message is None:
        raise BadRequest("MessageSid and a valid From number are required", code="invalid_body")
    result = ingest(webhook, [message])
    word = keyword(params.get("Body", ""))
    if word in ("stop", "start") and result.accepted:
        person = profiles.customer_find(kind="phone", value=params["From"])
        if person is not None:
            status = "denied" if word == "stop" else "granted"
            profiles.consent_set(
                customer_id=person.id,
                choices=[
                    profiles.ConsentChoice(purpose, "sms", status) for purpose in settings.CHANNELS_SMS_STOP_PURPOSES
                ],
                origin="webhook",
                actor=f"webhook:twilio:{webhook.source.id}",
                source_id=webhook.source.id,
                source_label=webhook.source.name,
            )
            result.consent = [f"{purpose}/sms={status}" for purpose in settings.CHANNELS_SMS_STOP_PURPOSES]
    return result


@dataclass(frozen=True, slots=True)
class StatusResult:
    matched: bool
    delivery_id: str | None
    status: str


def status_receive(*, secret: str, body: bytes, meta: Mapping[str, Any], url: str) -> StatusResult:
    """A status callback: delivered and undelivered/failed move the delivery found by its
    MessageSid; in-flight statuses and unknown MessageSids change nothing."""
    report = status_report(_verified(secret, body, meta, url))
    if report is None:
        raise BadRequest("MessageSid and a known MessageStatus are required", code="invalid_body")
    sid, status, error_code = report
    outcome = STATUS_OUTCOMES.get(status)
    if outcome is None:
        delivery = delivery_by_provider_id(channel="sms", provider_message_id=sid)
        return StatusResult(delivery is not None, str(delivery.id) if delivery else None, status)
    reason = f"twilio {status}" + (f" (error {error_code})" if error_code else "")
    delivery = delivery_status_report(
        channel="sms",
        provider_message_id=sid,
        outcome=outcome,
        reason=reason,
        dead_address=error_code in DEAD_NUMBER_CODES,
    )
    if delivery is None:
        return StatusResult(False, None, status)
    return StatusResult(True, str(delivery.id), delivery.status)
