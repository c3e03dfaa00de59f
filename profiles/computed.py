"""Computed traits, kept up to date incrementally as events are routed.

Pure functions: no Django, no database. A definition says what to compute over which events;
each customer keeps a small state per trait, updated event by event, from which the value is
read. Windowed counts and sums keep one bucket per UTC day, so the value over "the last N days"
is always current without recomputing anything in batch.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

KINDS = ("count", "sum", "last_value", "first_seen", "last_seen")
CHANNEL = "$channel"


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    kind: str
    event_name: str
    property: str = ""
    where: tuple[tuple[str, Any], ...] = ()
    window_days: int | None = None


@dataclass(frozen=True, slots=True)
class Occurrence:
    """What a definition needs of one event."""

    name: str
    timestamp: datetime
    channel: str
    properties: dict[str, Any]


def matches(definition: Definition, event: Occurrence) -> bool:
    if event.name != definition.event_name:
        return False
    return all(event.properties.get(key) == value for key, value in definition.where)


def _property(definition: Definition, event: Occurrence) -> Any:
    if definition.property == CHANNEL:
        return event.channel
    return event.properties.get(definition.property)


def apply(definition: Definition, state: dict[str, Any] | None, event: Occurrence) -> dict[str, Any]:
    """The state after one more matching event."""
    state = dict(state or {})
    at = event.timestamp.isoformat()
    if definition.kind in ("count", "sum"):
        if definition.kind == "sum":
            raw = _property(definition, event)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return state
            amount: float = raw
        else:
            amount = 1
        if definition.window_days:
            buckets = dict(state.get("days", {}))
            day = event.timestamp.date().isoformat()
            buckets[day] = buckets.get(day, 0) + amount
            state["days"] = buckets
        else:
            state["total"] = state.get("total", 0) + amount
    elif definition.kind == "last_value":
        value = _property(definition, event)
        if value is not None and at >= state.get("at", ""):
            state.update(value=value, at=at)
    elif definition.kind == "first_seen":
        if not state.get("at") or at < state["at"]:
            state["at"] = at
    elif definition.kind == "last_seen" and at > state.get("at", ""):
        state["at"] = at
    return state


def value(definition: Definition, state: dict[str, Any] | None, today: date) -> Any:
    state = state or {}
    if definition.kind in ("count", "sum"):
        if definition.window_days:
            start = (today - timedelta(days=definition.window_days - 1)).isoformat()
            return sum(n for day, n in state.get("days", {}).items() if day >= start)
        return state.get("total", 0)
    if definition.kind == "last_value":
        return state.get("value")
    return state.get("at")


def prune(definition: Definition, state: dict[str, Any], today: date) -> dict[str, Any]:
    """Drop day buckets that fell out of the window, so states stay small."""
    if not definition.window_days or "days" not in state:
        return state
    start = (today - timedelta(days=definition.window_days - 1)).isoformat()
    return {**state, "days": {day: n for day, n in state["days"].items() if day >= start}}


def unmerge_state(
    definition: Definition,
    current: dict[str, Any] | None,
    taken: dict[str, Any] | None,
    before: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The state of a survivor giving back a profile whose state `taken` was merged into it
    (its own state then was `before`). Counts and sums give back what the taken profile had
    counted, keeping what was counted since; a first or last seen that is the taken profile's
    goes back to the survivor's own, one set since the merge stays."""
    if not taken or not current:
        return current
    if definition.kind in ("count", "sum"):
        if definition.window_days:
            days = {day: n - taken.get("days", {}).get(day, 0) for day, n in current.get("days", {}).items()}
            kept = {day: n for day, n in days.items() if n > 0}
            return {"days": kept} if kept or before else None
        total = current.get("total", 0) - taken.get("total", 0)
        return {"total": total} if total or before else None
    return before if current == taken else current


def merge_states(definition: Definition, first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any]:
    """The state of one person whose events were split across two profiles."""
    a, b = dict(first or {}), dict(second or {})
    if not a or not b:
        return a or b
    if definition.kind in ("count", "sum"):
        if definition.window_days:
            days = dict(a.get("days", {}))
            for day, n in b.get("days", {}).items():
                days[day] = days.get(day, 0) + n
            return {"days": days}
        return {"total": a.get("total", 0) + b.get("total", 0)}
    if definition.kind == "first_seen":
        return a if a.get("at", "") <= b.get("at", "") else b
    return a if a.get("at", "") >= b.get("at", "") else b
