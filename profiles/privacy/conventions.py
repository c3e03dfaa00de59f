"""How consent is written in events, and what a purpose or channel name may be.

Pure logic: no Django, no database.

One shape serves both places consent can travel in an event, `context.consent` (any call) and
the `consent` trait of an identify:

    {"marketing": {"email": "granted", "sms": false},   # purpose -> channel -> status
     "analytics": true,                                  # purpose -> status, for every channel
     "categoryPreferences": {"Advertising": true}}       # Segment's consent object: every channel

A status is `true`/`false` or `"granted"`/`"denied"` (any case). Names are lower-cased, with
spaces and hyphens turned into underscores ("DataSharing" -> "datasharing"). Entries that do not
fit are skipped: the event itself was already accepted, and a consent nobody can read is not one.
"""

import re
from dataclasses import dataclass

ANY_CHANNEL = "*"
GRANTED = "granted"
DENIED = "denied"
MAX_PURPOSE_LENGTH = 64

# Segment's consent object keys that are not purposes.
SEGMENT_CATEGORIES = "categoryPreferences"
SEGMENT_IGNORED = frozenset({"destinationPreferences", "defaultDestinationBehavior"})


@dataclass(frozen=True, slots=True)
class ConsentChoice:
    purpose: str
    channel: str
    status: str


def normalize_name(value: object, *, max_length: int = 32) -> str | None:
    """A purpose or channel name, or None when it cannot be one."""
    if not isinstance(value, str):
        return None
    name = re.sub(r"[\s\-]+", "_", value.strip()).lower()
    if len(name) > max_length or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return None
    return name


def normalize_channel(value: object) -> str | None:
    if value == ANY_CHANNEL:
        return ANY_CHANNEL
    return normalize_name(value)


def normalize_purpose(value: object) -> str | None:
    return normalize_name(value, max_length=MAX_PURPOSE_LENGTH)


def normalize_status(value: object) -> str | None:
    if isinstance(value, bool):
        return GRANTED if value else DENIED
    if isinstance(value, str) and value.strip().lower() in (GRANTED, DENIED):
        return value.strip().lower()
    return None


def choices_from(payload: object) -> list[ConsentChoice]:
    """The consent choices a `context.consent` object or a `consent` trait carries, in order,
    the last one winning when a purpose and channel appear twice."""
    if not isinstance(payload, dict):
        return []
    found: dict[tuple[str, str], str] = {}
    for key, value in payload.items():
        if key in SEGMENT_IGNORED:
            continue
        if key == SEGMENT_CATEGORIES:
            if isinstance(value, dict):
                for category, flag in value.items():
                    _add(found, category, ANY_CHANNEL, flag)
            continue
        if isinstance(value, dict):
            for channel, flag in value.items():
                _add(found, key, channel, flag)
        else:
            _add(found, key, ANY_CHANNEL, value)
    return [ConsentChoice(purpose, channel, status) for (purpose, channel), status in found.items()]


def _add(found: dict[tuple[str, str], str], purpose: object, channel: object, flag: object) -> None:
    name = normalize_purpose(purpose)
    where = normalize_channel(channel)
    status = normalize_status(flag)
    if name and where and status:
        found.pop((name, where), None)
        found[(name, where)] = status
