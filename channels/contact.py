"""The contact policy's rules, pure: no Django, no database.

One workspace-wide policy decides whether a customer may be contacted now:

- Transactional messages (purpose ``transactional``) are exempt from everything here: a receipt or a
  password reset is never capped or held for the night. Consent is a separate question.
- Quiet hours: no other message goes out between ``quiet_start`` and ``quiet_end`` in the customer's
  own time zone (the ``timezone`` trait, IANA; the policy's fallback zone when it is missing or
  unknown). A window whose start is after its end spans midnight (21:00-08:00). Priority does not
  bypass quiet hours: waking someone up is never worth it for a non-transactional message.
- Frequency caps: rules ``{purpose, channel, max, window}`` such as "at most 3 marketing messages
  in 7 days on any channel". ``purpose`` and ``channel`` may be ``*`` (any non-exempt purpose, any
  channel). Every rule that matches a message must have room for it. A ``high`` priority message
  bypasses caps (it still counts towards them once sent).

The verdict says when to try again (``retry_at``): the end of the quiet hours, or the moment the
oldest counted message of the full cap leaves its window, so a journey can hold on a timer.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ANY = "*"
EXEMPT_PURPOSES = frozenset({"transactional"})
PRIORITIES = ("normal", "high")
MAX_RULES = 50
MAX_WINDOW = timedelta(days=366)
WINDOW_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}

# Reasons, stable strings the journey engine and the outcome events carry.
OK = "ok"
EXEMPT = "exempt"
PRIORITY_BYPASS = "priority_bypass"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAP = "frequency_cap"


class PolicyError(ValueError):
    """A policy that cannot be applied; `path` points at the offending part (JSON pointer)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class CapRule:
    purpose: str
    channel: str
    max: int
    window: timedelta

    def matches(self, purpose: str, channel: str) -> bool:
        return (self.purpose in (ANY, purpose)) and (self.channel in (ANY, channel))

    def describe(self) -> str:
        return f"at most {self.max} {self.purpose} on {self.channel} per {_describe(self.window)}"


@dataclass(frozen=True, slots=True)
class Policy:
    caps: tuple[CapRule, ...] = ()
    quiet_start: time | None = None
    quiet_end: time | None = None
    fallback_timezone: str = "UTC"
    high_priority_bypasses_caps: bool = True

    @property
    def longest_window(self) -> timedelta:
        return max((rule.window for rule in self.caps), default=timedelta(0))


@dataclass(frozen=True, slots=True)
class Sent:
    """One message that counts towards the caps: its purpose, channel and when it went out."""

    purpose: str
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ContactVerdict:
    allowed: bool
    reason: str
    retry_at: datetime | None = None
    detail: str = ""


def parse_caps(raw: object) -> tuple[CapRule, ...]:
    """Cap rules from their JSON form: a list of {purpose, channel, max, window: {days|hours|minutes: n}}."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError("/caps", "must be a list of rules")
    if len(raw) > MAX_RULES:
        raise PolicyError("/caps", f"at most {MAX_RULES} rules")
    rules = []
    for index, item in enumerate(raw):
        path = f"/caps/{index}"
        if not isinstance(item, dict):
            raise PolicyError(path, "must be an object")
        unknown = set(item) - {"purpose", "channel", "max", "window"}
        if unknown:
            raise PolicyError(path, f"unknown keys {sorted(unknown)}")
        purpose = _name(item.get("purpose", ANY), f"{path}/purpose")
        if purpose in EXEMPT_PURPOSES:
            raise PolicyError(f"{path}/purpose", f"{purpose} messages are exempt from caps")
        channel = _name(item.get("channel", ANY), f"{path}/channel")
        limit = item.get("max")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 10_000:
            raise PolicyError(f"{path}/max", "must be an integer from 0 to 10000")
        rules.append(CapRule(purpose, channel, limit, parse_window(item.get("window"), f"{path}/window")))
    return tuple(rules)


def parse_window(raw: object, path: str = "/window") -> timedelta:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise PolicyError(path, 'must be one of {"days": n}, {"hours": n}, {"minutes": n}')
    ((unit, amount),) = raw.items()
    if unit not in WINDOW_UNITS:
        raise PolicyError(path, f"unit must be one of {sorted(WINDOW_UNITS)}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise PolicyError(f"{path}/{unit}", "must be a positive integer")
    window = timedelta(seconds=amount * WINDOW_UNITS[unit])
    if window > MAX_WINDOW:
        raise PolicyError(path, "must be at most 366 days")
    return window


def caps_to_json(caps: Iterable[CapRule]) -> list[dict[str, Any]]:
    return [
        {"purpose": rule.purpose, "channel": rule.channel, "max": rule.max, "window": _window_json(rule.window)}
        for rule in caps
    ]


def zone(name: str | None, fallback: str) -> ZoneInfo:
    """The customer's zone when it is a known IANA name, else the fallback (UTC if that is bad too)."""
    for candidate in (name, fallback):
        if isinstance(candidate, str) and candidate and len(candidate) <= 64:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def quiet_until(policy: Policy, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the quiet hours around `now` end (UTC), or None when `now` is outside them."""
    start, end = policy.quiet_start, policy.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock < end
        end_day = local.date()
    else:
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    # Wall-clock end in the customer's zone; across a DST change the zone resolves it.
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def evaluate(
    policy: Policy,
    *,
    purpose: str,
    channel: str,
    priority: str,
    now: datetime,
    tz: ZoneInfo,
    sent: Sequence[Sent],
) -> ContactVerdict:
    """May a message of this purpose, channel and priority go out at `now`, given what was sent?"""
    if purpose in EXEMPT_PURPOSES:
        return ContactVerdict(True, EXEMPT)
    quiet_end = quiet_until(policy, now, tz)
    if quiet_end is not None:
        return ContactVerdict(False, QUIET_HOURS, quiet_end, f"quiet hours in {tz.key} until {quiet_end.isoformat()}")
    full: list[tuple[CapRule, datetime]] = []
    for rule in policy.caps:
        if not rule.matches(purpose, channel):
            continue
        since = now - rule.window
        counted = sorted(
            item.at
            for item in sent
            if item.at > since and item.purpose not in EXEMPT_PURPOSES and rule.matches(item.purpose, item.channel)
        )
        if len(counted) >= rule.max:
            # A slot frees when enough of the oldest leave the window for one more to fit.
            frees_at = counted[len(counted) - rule.max] + rule.window if rule.max else None
            full.append((rule, frees_at or now + rule.window))
    if not full:
        return ContactVerdict(True, OK)
    if priority == "high" and policy.high_priority_bypasses_caps:
        return ContactVerdict(True, PRIORITY_BYPASS, None, "; ".join(rule.describe() for rule, _ in full))
    retry_at = max(at for _, at in full)
    # The slot may free inside the quiet hours: then the real chance is when they end.
    quiet_end = quiet_until(policy, retry_at, tz)
    if quiet_end is not None:
        retry_at = quiet_end
    rule = full[0][0]
    return ContactVerdict(False, FREQUENCY_CAP, retry_at, rule.describe())


def verdict_json(verdict: ContactVerdict) -> Mapping[str, Any]:
    return {
        "allowed": verdict.allowed,
        "reason": verdict.reason,
        "retry_at": verdict.retry_at.isoformat() if verdict.retry_at else None,
        "detail": verdict.detail,
    }


def _name(value: object, path: str) -> str:
    if value == ANY:
        return ANY
    if not isinstance(value, str) or not value or len(value) > 64 or not value.replace("_", "a").isalnum():
        raise PolicyError(path, 'must be a lower-case name or "*"')
    if value != value.lower():
        raise PolicyError(path, 'must be a lower-case name or "*"')
    return value


def _window_json(window: timedelta) -> dict[str, int]:
    seconds = int(window.total_seconds())
    for unit in ("days", "hours", "minutes"):
        if seconds % WINDOW_UNITS[unit] == 0:
            return {unit: seconds // WINDOW_UNITS[unit]}
    return {"minutes": max(1, seconds // 60)}


def _describe(window: timedelta) -> str:
    ((unit, amount),) = _window_json(window).items()
    return f"{amount} {unit[:-1] if amount == 1 else unit}"
