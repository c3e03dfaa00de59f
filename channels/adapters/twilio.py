"""Twilio inbound SMS: form-encoded, signed with X-Twilio-Signature (see channels.signing)."""

import urllib.parse
from typing import Any

from profiles.identifiers import normalize_phone

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
    phone = normalize_phone(params.get("From", ""))
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


def status_report(params: dict[str, str]) -> tuple[str, str, str, str] | None:
    """(MessageSid, MessageStatus, ErrorCode, To) of a status callback; None when it is not one."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid or len(sid) > 64 or (status not in STATUS_OUTCOMES and status not in STATUS_IN_FLIGHT):
        return None
    return sid, status, (params.get("ErrorCode") or "").strip()[:16], params.get("To", "")
