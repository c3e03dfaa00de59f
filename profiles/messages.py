"""Segment Tracking API messages: validation, normalisation and clock-skew correction.

Pure logic: no Django, no database. Turns one decoded JSON message into a `Message` the
ingestion service can store, or raises `MessageError` saying what is wrong.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from profiles.identifiers import IdentityKey, normalize, normalize_id

CALL_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
MAX_NAME_LENGTH = 200
MAX_MESSAGE_ID_LENGTH = 200
EXTRA_FIELDS = ("groupId", "previousId", "integrations", "category")


class MessageError(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class Message:
    type: str
    message_id: str
    name: str
    user_id: str
    anonymous_id: str
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    properties: dict[str, Any]
    context: dict[str, Any]
    extra: dict[str, Any]
    identities: list[IdentityKey]
    previous_id: str | None = None
    traits: dict[str, Any] | None = None
    customer_id: Any = field(default=None)
    schema_version_id: int | None = None
    schema_violations: list[dict[str, str]] = field(default_factory=list)


def parse_time(value: object, field_name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError("invalid_timestamp", f"{field_name} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MessageError("invalid_timestamp", f"{field_name} is not an ISO 8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def corrected_timestamp(
    *,
    timestamp: datetime | None,
    original_timestamp: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> datetime:
    """An explicit timestamp is kept as given; otherwise the device's clock skew is removed:
    timestamp = receivedAt - (sentAt - originalTimestamp)."""
    if timestamp is not None:
        return timestamp
    if original_timestamp is not None and sent_at is not None:
        return received_at - (sent_at - original_timestamp)
    if original_timestamp is not None:
        return original_timestamp
    return received_at


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError("invalid_field", f"{key} must be an object")
    return value


def _identities(
    *,
    user_id: str,
    anonymous_id: str,
    traits: dict[str, Any],
    context: dict[str, Any],
    external_kinds: frozenset[str],
    phone_region: str | None,
) -> list[IdentityKey]:
    keys: list[IdentityKey] = []
    if user_id:
        keys.append(("user_id", user_id))
    if anonymous_id:
        keys.append(("anonymous_id", anonymous_id))
    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    for kind in ("email", "phone"):
        raw = traits.get(kind, context_traits.get(kind))  # type: ignore[union-attr]
        value = normalize(kind, raw, phone_region) if raw is not None else None
        if value:
            keys.append((kind, value))
    device = context.get("device")
    if isinstance(device, dict):
        device_id = normalize_id(device.get("id"))
        if device_id:
            keys.append(("device_id", device_id))
    if external_kinds:
        external_ids = context.get("externalIds")
        if isinstance(external_ids, list):
            for entry in external_ids:
                if isinstance(entry, dict) and entry.get("type") in external_kinds:
                    value = normalize_id(entry.get("id"))
                    if value:
                        keys.append((str(entry["type"]), value))
        for kind in external_kinds:
            if kind in traits:
                value = normalize_id(traits[kind])
                if value:
                    keys.append((kind, value))
    return list(dict.fromkeys(keys))


def parse_message(
    message: object,
    *,
    call_type: str | None,
    received_at: datetime,
    defaults: dict[str, Any] | None = None,
    external_kinds: frozenset[str] = frozenset(),
    phone_region: str | None = None,
) -> Message:
    """Validate and normalise one message. `call_type` is the call's own type (None in a batch,
    where each message names its type); `defaults` holds batch-level sentAt/context/integrations."""
    if not isinstance(message, dict):
        raise MessageError("invalid_message", "each message must be a JSON object")
    defaults = defaults or {}
    kind = message.get("type", call_type) if call_type is None else call_type
    if kind not in CALL_TYPES:
        raise MessageError("invalid_type", f"type must be one of {sorted(CALL_TYPES)}")

    user_id = normalize_id(message.get("userId")) or ""
    anonymous_id = normalize_id(message.get("anonymousId")) or ""
    if not user_id and not anonymous_id:
        raise MessageError("missing_identity", "userId or anonymousId is required")

    previous_id = None
    if kind == "alias":
        previous_id = normalize_id(message.get("previousId"))
        if not previous_id or not user_id:
            raise MessageError("missing_identity", "alias requires userId and previousId")

    name = ""
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise MessageError("missing_event", "track requires a non-empty event name")
        name = event.strip()
    elif kind in ("page", "screen"):
        page_name = message.get("name")
        if page_name is not None and not isinstance(page_name, str):
            raise MessageError("invalid_field", "name must be a string")
        name = (page_name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise MessageError("invalid_field", f"event name longer than {MAX_NAME_LENGTH} characters")

    raw_message_id = message.get("messageId")
    if raw_message_id is None:
        message_id = str(uuid.uuid4())
    else:
        message_id = normalize_id(raw_message_id) or ""
        if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
            raise MessageError(
                "invalid_message_id",
                f"messageId must be a non-empty string of at most {MAX_MESSAGE_ID_LENGTH} characters",
            )

    context = _object(message, "context")
    default_context = defaults.get("context")
    if isinstance(default_context, dict) and default_context:
        context = {**default_context, **context}

    traits: dict[str, Any] | None = None
    if kind in ("identify", "group"):
        traits = _object(message, "traits")
        if not traits and kind == "identify" and isinstance(context.get("traits"), dict):
            # RudderStack's SDKs send identify traits only as context.traits.
            traits = context["traits"]
        properties = traits
    else:
        properties = _object(message, "properties")

    extra = {key: message[key] for key in EXTRA_FIELDS if key in message}
    if "integrations" not in extra and isinstance(defaults.get("integrations"), dict):
        extra["integrations"] = defaults["integrations"]

    timestamp = parse_time(message.get("timestamp"), "timestamp")
    original_timestamp = parse_time(message.get("originalTimestamp"), "originalTimestamp")
    sent_at = parse_time(message.get("sentAt", defaults.get("sentAt")), "sentAt")

    identities = _identities(
        user_id=user_id,
        anonymous_id=anonymous_id,
        traits=traits if kind == "identify" and traits is not None else {},
        context=context,
        external_kinds=external_kinds,
        phone_region=phone_region,
    )
    return Message(
        type=kind,
        message_id=message_id,
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=corrected_timestamp(
            timestamp=timestamp, original_timestamp=original_timestamp, sent_at=sent_at, received_at=received_at
        ),
        original_timestamp=original_timestamp,
        sent_at=sent_at,
        properties=properties,
        context=context,
        extra=extra,
        identities=identities,
        previous_id=previous_id,
        traits=traits if kind == "identify" else None,
    )
