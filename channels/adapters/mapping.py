"""A configurable field mapping from a system's own JSON to canonical events, pure: no Django.

For systems that cannot be changed to send Throughline's format. A source stores one mapping:

    {"items": "data.orders",                       # where the records are; "" = the body itself
     "type": "track",                              # or "identify"
     "event": "Order Completed",                   # a constant name, or {"path": "kind",
                                                   #   "values": {"order.paid": "Order Completed"}}
     "messageId": "id",                            # required: the record's stable id (dedup)
     "messageIdPrefix": "legacy-erp",              # optional, default the empty string
     "userId": "customer.ref", "anonymousId": "...",
     "timestamp": "created_at",                    # ISO 8601, or unix seconds
     "properties": {"total": "amount", "sku": "lines.0.sku"},
     "traits": {"email": "customer.email"}}        # identify traits; on track, context.traits

Paths are dotted keys into the record (digits index lists). A record whose path is missing gets
no such field; a record without an id or a person is still handed to ingestion, which quarantines
it with its reason (nothing is silently dropped). A record whose event name maps to nothing (a
`values` table without that key) is skipped: the mapping says which kinds matter.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_PATH_LENGTH = 200
MAX_FIELDS = 100
MAX_RECORDS = 2500
TOP_KEYS = frozenset(
    {
        "items",
        "type",
        "event",
        "messageId",
        "messageIdPrefix",
        "userId",
        "anonymousId",
        "timestamp",
        "properties",
        "traits",
    }
)


class MappingError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class EventMapping:
    items: tuple[str, ...]
    type: str
    event_name: str | None
    event_path: tuple[str, ...] | None
    event_values: Mapping[str, str] | None
    message_id: tuple[str, ...]
    message_id_prefix: str
    user_id: tuple[str, ...] | None
    anonymous_id: tuple[str, ...] | None
    timestamp: tuple[str, ...] | None
    properties: Mapping[str, tuple[str, ...]]
    traits: Mapping[str, tuple[str, ...]]


def validate_mapping(spec: object) -> list[MappingError]:
    try:
        compile_mapping(spec)
    except MappingError as error:
        return [error]
    return []


def compile_mapping(spec: object) -> EventMapping:
    """The mapping, checked; MappingError(path, message) points at the first fault (JSON pointer)."""
    if not isinstance(spec, dict):
        raise MappingError("", "must be an object")
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise MappingError("", f"unknown keys {sorted(unknown)}")
    kind = spec.get("type", "track")
    if kind not in ("track", "identify"):
        raise MappingError("/type", 'must be "track" or "identify"')
    event_name = event_path = event_values = None
    event = spec.get("event")
    if kind == "track":
        if isinstance(event, str) and 0 < len(event) <= 200:
            event_name = event
        elif isinstance(event, dict) and set(event) <= {"path", "values"} and "path" in event:
            event_path = _path(event["path"], "/event/path")
            values = event.get("values")
            if values is not None:
                if not isinstance(values, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) and 0 < len(v) <= 200 for k, v in values.items()
                ):
                    raise MappingError("/event/values", "must map source values to event names (strings)")
                event_values = dict(values)
        else:
            raise MappingError("/event", 'a track mapping needs an event name or {"path": ..., "values": {...}}')
    elif event is not None:
        raise MappingError("/event", "an identify mapping has no event")
    if "messageId" not in spec:
        raise MappingError("/messageId", "is required: the path of the record's stable id")
    prefix = spec.get("messageIdPrefix", "")
    if not isinstance(prefix, str) or len(prefix) > 50:
        raise MappingError("/messageIdPrefix", "must be a string of at most 50 characters")
    if "userId" not in spec and "anonymousId" not in spec:
        raise MappingError("/userId", "userId or anonymousId is required")
    return EventMapping(
        items=_path(spec.get("items", ""), "/items", allow_empty=True),
        type=kind,
        event_name=event_name,
        event_path=event_path,
        event_values=event_values,
        message_id=_path(spec["messageId"], "/messageId"),
        message_id_prefix=prefix,
        user_id=_path(spec["userId"], "/userId") if "userId" in spec else None,
        anonymous_id=_path(spec["anonymousId"], "/anonymousId") if "anonymousId" in spec else None,
        timestamp=_path(spec["timestamp"], "/timestamp") if "timestamp" in spec else None,
        properties=_fields(spec.get("properties", {}), "/properties"),
        traits=_fields(spec.get("traits", {}), "/traits"),
    )


def records(mapping: EventMapping, payload: object) -> list[Any]:
    """The records a body carries (a list at `items`, or one object)."""
    found = get_path(payload, mapping.items) if mapping.items else payload
    if isinstance(found, list):
        return found[:MAX_RECORDS]
    return [found] if isinstance(found, dict) else []


def to_messages(mapping: EventMapping, payload: object) -> list[dict[str, Any]]:
    messages = []
    for record in records(mapping, payload):
        message = to_message(mapping, record)
        if message is not None:
            messages.append(message)
    return messages


def to_message(mapping: EventMapping, record: object) -> dict[str, Any] | None:
    """One record as a canonical message; None when its event kind is not mapped."""
    message: dict[str, Any] = {"type": mapping.type}
    if mapping.type == "track":
        if mapping.event_name is not None:
            name: object = mapping.event_name
        else:
            assert mapping.event_path is not None
            raw = get_path(record, mapping.event_path)
            name = mapping.event_values.get(str(raw)) if mapping.event_values is not None else raw
        if not isinstance(name, str) or not name:
            return None
        message["event"] = name
    record_id = get_path(record, mapping.message_id)
    message["messageId"] = f"{mapping.message_id_prefix}:{record_id}" if record_id not in (None, "") else ""
    for key, path in (("userId", mapping.user_id), ("anonymousId", mapping.anonymous_id)):
        value = get_path(record, path) if path else None
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            message[key] = str(value)
    if mapping.timestamp is not None:
        stamp = _timestamp(get_path(record, mapping.timestamp))
        if stamp:
            message["timestamp"] = stamp
    properties = _pick(record, mapping.properties)
    traits = _pick(record, mapping.traits)
    if mapping.type == "identify":
        message["traits"] = traits
    else:
        message["properties"] = properties
        if traits:
            message["context"] = {"traits": traits}
    return message


def _pick(record: object, fields: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    picked = {}
    for name, path in fields.items():
        value = get_path(record, path)
        if value is not None:
            picked[name] = value
    return picked


def get_path(value: object, path: tuple[str, ...] | None) -> Any:
    if not path:
        return value
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _timestamp(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 10**11:
        return datetime.fromtimestamp(value, UTC).isoformat()
    if isinstance(value, str) and value:
        return value
    return None


def _path(value: object, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, str) or len(value) > MAX_PATH_LENGTH:
        raise MappingError(where, "must be a dotted path such as customer.email")
    if value == "":
        if allow_empty:
            return ()
        raise MappingError(where, "must not be empty")
    parts = tuple(value.split("."))
    if any(not part for part in parts):
        raise MappingError(where, "must be a dotted path such as customer.email")
    return parts


def _fields(value: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise MappingError(where, "must map field names to paths")
    if len(value) > MAX_FIELDS:
        raise MappingError(where, f"at most {MAX_FIELDS} fields")
    fields = {}
    for name, path in value.items():
        if not isinstance(name, str) or not name or len(name) > 100:
            raise MappingError(where, "field names must be non-empty strings")
        fields[name] = _path(path, f"{where}/{name}")
    return fields
