"""Segment Tracking API messages: validation, normalisation and clock-skew correction.

Pure logic: no Django, no database. Turns one decoded JSON message into a `Message` the
ingestion service can store, or raises `MessageError` saying what is wrong.
"""

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

import orjson

from profiles.identifiers import MAX_IDENTIFIER_LENGTH, IdentityKey, normalize, normalize_id

CALL_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
MAX_NAME_LENGTH = 200
MAX_MESSAGE_ID_LENGTH = 200
# Objects and arrays inside one another, the message itself being level 1. Segment's own
# messages need about 5; orjson cannot write past 254 and Python's JSON encoder past about 500,
# so one limit well below both, checked once per message before anything else touches it.
MAX_DEPTH = 64
EXTRA_FIELDS = ("groupId", "previousId", "integrations", "category")
# orjson writes integers in this range and PostgreSQL's jsonb holds them; orjson reads larger
# ones as floats, so only a message built in Python can hold one outside it.
_INT_RANGE = (-(2**63), 2**64 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    # Bytes of the message as received, as JSON; None when not known. How it came, not what it
    # says: two parses of one message (as received, and as kept in the quarantine) are equal.
    size: int | None = field(default=None, compare=False)


def _pointer(path: tuple[object, ...]) -> str:
    """The JSON pointer of a value, for an error's detail: what PostgreSQL cannot store in it as
    its \\u escape, and at most 200 characters."""
    pointer = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path) or "/"
    if not _storable_text(pointer):
        pointer = encode_basestring_ascii(pointer)[1:-1]
    return pointer if len(pointer) <= 200 else pointer[:199] + "…"


def _storable_text(value: str) -> bool:
    """PostgreSQL's text and jsonb hold neither NUL nor a lone UTF-16 surrogate (which only
    Python's JSON reader lets through: orjson refuses it)."""
    return "\x00" not in value and (value.isascii() or _SURROGATE.search(value) is None)


class NonFiniteNumber(float):
    """A number past a double (`1e309`) as Python's JSON reader reads it (ingest_apis): a float
    orjson refuses to write, so check_values finds it and says where."""


def check_values(message: dict[str, Any]) -> int | None:
    """Refuse a message PostgreSQL cannot store or that is nested past MAX_DEPTH.

    orjson writes the message first (about a microsecond for a usual one): it fails on a lone
    surrogate, an integer past 64 bits, a NonFiniteNumber or nesting past 254 levels, and its
    output holds `\\u0000` wherever a NUL was and fewer than MAX_DEPTH brackets when the nesting
    cannot be deeper. Only when one of those says there may be something is the message walked
    in Python, to find what and where. Returns the size of the message as JSON (the batch's
    32 KB limit applies to it), None when orjson could not write it."""
    try:
        text = orjson.dumps(message)
    except orjson.JSONEncodeError:
        _walk(message)
        return None
    if b"\\u0000" in text or text.count(b"{") + text.count(b"[") > MAX_DEPTH:
        _walk(message)
    return len(text)


def _walk(message: dict[str, Any]) -> None:
    """check_values's search: one walk, without recursion (a message may come a thousand deep)."""
    problem: MessageError | None = None
    stack: list[tuple[Any, int, tuple[object, ...]]] = [(message, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise MessageError(
                "too_deep", f"objects and arrays nested more than {MAX_DEPTH} levels deep (at {_pointer(path)})"
            )
        for key, item in value.items() if type(value) is dict else enumerate(value):
            if problem is not None:
                if type(item) is dict or type(item) is list:
                    stack.append((item, depth + 1, path))
                continue
            problem = _value_problem((*path, key), key, item)
            if type(item) is dict or type(item) is list:
                stack.append((item, depth + 1, (*path, key)))
    if problem is not None:
        raise problem


def _value_problem(path: tuple[object, ...], key: object, item: object) -> MessageError | None:
    if type(key) is str and not _storable_text(key):
        return _text_error(path, "a key", key)
    if type(item) is str and not _storable_text(item):
        return _text_error(path, "the string", item)
    if isinstance(item, float) and not math.isfinite(item):
        return MessageError("invalid_number", f"{_pointer(path)} is not a finite number")
    if type(item) is int and not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
        return MessageError("invalid_number", f"{_pointer(path)} is an integer outside the 64-bit range")
    return None


def _text_error(path: tuple[object, ...], what: str, text: str) -> MessageError:
    found = "a NUL character (\\u0000)" if "\x00" in text else "a lone UTF-16 surrogate"
    return MessageError(
        "invalid_string",
        f"{what} at {_pointer(path)} contains {found}, which cannot be stored "
        "(quarantined as sent, and with it replaced by U+FFFD)",
    )


def storable(value: Any) -> Any:
    """`value` (a message check_values refused, within MAX_DEPTH) with what PostgreSQL cannot hold
    replaced: NUL and lone surrogates by U+FFFD, non-finite numbers and integers outside the
    64-bit range by null. The quarantine keeps this as `raw` beside the exact text (`json_text`)."""
    if isinstance(value, dict):
        return {_storable_str(key) if isinstance(key, str) else key: storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, str):
        return _storable_str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return None
    return value


def _storable_str(value: str) -> str:
    return _SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))


def json_text(value: Any) -> str:
    """`value` as ASCII JSON text, however deep, without recursion: NUL and lone surrogates come
    out as \\u escapes and infinities as 1e999, so the text holds exactly what was received and
    PostgreSQL's text type can keep it."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            parts.append(item.text)
        elif isinstance(item, dict):
            stack.append(_Token("}"))
            for index, (key, child) in enumerate(reversed(item.items())):
                stack.append(child)
                stack.append(_Token(encode_basestring_ascii(str(key)) + ":"))
                if index < len(item) - 1:
                    stack.append(_Token(","))
            parts.append("{")
        elif isinstance(item, list):
            stack.append(_Token("]"))
            for index, child in enumerate(reversed(item)):
                stack.append(child)
                if index < len(item) - 1:
                    stack.append(_Token(","))
            parts.append("[")
        else:
            parts.append(_scalar_text(item))
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Token:
    text: str


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "null" if math.isnan(value) else ("1e999" if value > 0 else "-1e999")
    if isinstance(value, int | float):
        return repr(value)
    return encode_basestring_ascii(str(value))


def parse_time(value: object, field_name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError("invalid_timestamp", f"{field_name} must be an ISO 8601 string, not {json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MessageError("invalid_timestamp", f"{field_name} is not an ISO 8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # In UTC, as it is stored: 0001-01-01T00:00+01:00 is before year 1 there.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise MessageError("invalid_timestamp", f"{field_name} is out of range in UTC: {value[:40]!r}") from None


def corrected_timestamp(
    *,
    timestamp: datetime | None,
    original_timestamp: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> datetime:
    """An explicit timestamp is kept as given; otherwise the device's clock skew is removed:
    timestamp = receivedAt - (sentAt - originalTimestamp). A correction that leaves the range of
    dates (year 1 sent in year 9999) is refused: the message's time cannot be known."""
    if timestamp is not None:
        return timestamp
    if original_timestamp is not None and sent_at is not None:
        try:
            return received_at - (sent_at - original_timestamp)
        except OverflowError:
            raise MessageError(
                "invalid_timestamp",
                "originalTimestamp corrected by the clock skew sentAt - originalTimestamp is out of range "
                f"(sentAt {sent_at.isoformat()}, originalTimestamp {original_timestamp.isoformat()})",
            ) from None
    if original_timestamp is not None:
        return original_timestamp
    return received_at


def json_type(value: object) -> str:
    """How an error names the JSON type of what it got: 'an object', 'a number', ..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "null"


def _identifier(message: dict[str, Any], key: str) -> str:
    """userId, anonymousId or previousId trimmed; empty when absent or blank (Segment's SDKs send
    an empty one for "none"), an error saying what is wrong otherwise."""
    value = message.get(key)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MessageError("invalid_field", f"{key} must be a string or an integer, not {json_type(value)}")
    text = str(value).strip() if isinstance(value, int) else value.strip()
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise MessageError(
            "invalid_field", f"{key} is too long: {len(text)} characters, the limit is {MAX_IDENTIFIER_LENGTH}"
        )
    return text


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError("invalid_field", f"{key} must be an object, not {json_type(value)}")
    return value


def _message_id(value: object) -> str:
    """The message's messageId, or a new one when it has none."""
    if value is None:
        return str(uuid.uuid4())
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MessageError("invalid_message_id", f"messageId must be a string or an integer, not {json_type(value)}")
    message_id = str(value).strip()
    if not message_id:
        raise MessageError("invalid_message_id", "messageId is empty: send a non-empty one, or none")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise MessageError(
            "invalid_message_id",
            f"messageId is too long: {len(message_id)} characters, the limit is {MAX_MESSAGE_ID_LENGTH}",
        )
    return message_id


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
                if isinstance(entry, dict) and isinstance(entry.get("type"), str) and entry["type"] in external_kinds:
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
        raise MessageError("invalid_message", f"each message must be a JSON object, not {json_type(message)}")
    size = check_values(message)
    defaults = defaults or {}
    kind = message.get("type", call_type) if call_type is None else call_type
    if kind not in CALL_TYPES:
        if kind is None:
            raise MessageError("invalid_type", f"type is missing: one of {sorted(CALL_TYPES)} is required")
        shown = repr(kind[:40]) if isinstance(kind, str) else json_type(kind)
        raise MessageError("invalid_type", f"type must be one of {sorted(CALL_TYPES)}, not {shown}")

    user_id = _identifier(message, "userId")
    anonymous_id = _identifier(message, "anonymousId")
    if not user_id and not anonymous_id:
        raise MessageError("missing_identity", "userId or anonymousId is required")

    previous_id = None
    if kind == "alias":
        previous_id = _identifier(message, "previousId") or None
        if not previous_id or not user_id:
            raise MessageError("missing_identity", "alias requires userId and previousId")

    name = ""
    if kind == "track":
        event = message.get("event")
        if event is not None and not isinstance(event, str):
            raise MessageError("invalid_field", f"event must be a string, not {json_type(event)}")
        if not event or not event.strip():
            raise MessageError("missing_event", "track requires a non-empty event name")
        name = event.strip()
    elif kind in ("page", "screen"):
        page_name = message.get("name")
        if page_name is not None and not isinstance(page_name, str):
            raise MessageError("invalid_field", f"name must be a string, not {json_type(page_name)}")
        name = (page_name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise MessageError(
            "invalid_field",
            f"{'event' if kind == 'track' else 'name'} is too long: {len(name)} characters, "
            f"the limit is {MAX_NAME_LENGTH}",
        )

    message_id = _message_id(message.get("messageId"))

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
    corrected = corrected_timestamp(
        timestamp=timestamp, original_timestamp=original_timestamp, sent_at=sent_at, received_at=received_at
    )

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
        timestamp=corrected,
        original_timestamp=original_timestamp,
        sent_at=sent_at,
        properties=properties,
        context=context,
        extra=extra,
        identities=identities,
        previous_id=previous_id,
        traits=traits if kind == "identify" else None,
        size=size,
    )
