"""A chatbot conversation webhook, signed Stripe-style.

{"id": "evt_...", "type": "message.created", "created": <unix>,
 "data": {"conversation_id": "...", "direction": "inbound"|"outbound", "text": "...",
          "customer": {"user_id"|"anonymous_id"|"email"|"phone": ...}}}
"""

from datetime import UTC, datetime
from typing import Any

from channels.adapters.identity import ids_from

EVENTS = {"inbound": "Chat Message Received", "outbound": "Chat Message Sent"}


def to_message(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    assert isinstance(data, dict)
    direction = data.get("direction") if data.get("direction") in EVENTS else "inbound"
    message: dict[str, Any] = {
        "type": "track",
        "event": EVENTS[str(direction)],
        "messageId": f"chat:{payload.get('id', '')}",
        "properties": {
            "conversation_id": str(data.get("conversation_id", "")),
            "text": str(data.get("text", ""))[:4000],
            "provider_event_type": str(payload.get("type", "")),
        },
        **ids_from(data.get("customer"), prefix="chat"),
    }
    created = payload.get("created")
    if isinstance(created, int):
        message["timestamp"] = datetime.fromtimestamp(created, UTC).isoformat()
    return message
