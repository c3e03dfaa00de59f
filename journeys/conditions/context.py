"""What a condition is evaluated against. Pure: no Django.

The caller (engine, segments, decide, simulation) loads only the roots a compiled condition
`needs` and fills the rest with the empty defaults.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from journeys.conditions.compiler import Condition


class EventHistory(Protocol):
    """The customer's past events, as `performed` conditions count them."""

    def count(self, name: str, since: datetime | None, where: Condition | None) -> int:
        """How many events named `name` at or after `since` (None: ever) match `where`."""
        ...


class NoHistory:
    """History for contexts that have none loaded: every count is 0."""

    def count(self, name: str, since: datetime | None, where: Condition | None) -> int:
        return 0


NO_HISTORY = NoHistory()


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class ListEventHistory:
    """History over a list of event mappings, each shaped like `EvalContext.event`
    (`name`, `type`, `properties`, `timestamp` as an aware datetime or an ISO string).
    Used by simulation and tests; the database-backed one lives in journeys.segments.
    Events are kept per name in time order, so a window is found by bisection."""

    __slots__ = ("_by_name", "_undated")

    def __init__(self, events: Iterable[Mapping[str, Any]] = ()) -> None:
        self._by_name: dict[str, tuple[list[datetime], list[Mapping[str, Any]]]] = {}
        self._undated: dict[str, list[Mapping[str, Any]]] = {}
        for event in events:
            self.append(event)

    def append(self, event: Mapping[str, Any]) -> None:
        name = event.get("name")
        if not isinstance(name, str):
            return
        at = _as_datetime(event.get("timestamp"))
        if at is None:
            self._undated.setdefault(name, []).append(event)
            return
        times, events = self._by_name.setdefault(name, ([], []))
        index = bisect_right(times, at)
        times.insert(index, at)
        events.insert(index, event)

    def count(self, name: str, since: datetime | None, where: Condition | None) -> int:
        times, events = self._by_name.get(name, ((), ()))
        start = 0 if since is None else bisect_left(times, since)
        dated = events[start:] if start else events
        undated = self._undated.get(name, ()) if since is None else ()
        if where is None:
            return len(dated) + len(undated)
        matches = where.matches_event
        return sum(1 for event in dated if matches(event)) + sum(1 for event in undated if matches(event))


@dataclass(frozen=True, slots=True)
class EvalContext:
    """Everything a condition may read. `now` is aware (UTC); `timezone` is the customer's IANA
    zone, or None, in which case `now.*` fields use `fallback_timezone`."""

    now: datetime
    event: Mapping[str, Any] | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    computed: Mapping[str, Any] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    session: Mapping[str, Any] | None = None
    consent: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    timezone: str | None = None
    fallback_timezone: str = "UTC"
    customer_id: str | None = None
    history: EventHistory = NO_HISTORY
