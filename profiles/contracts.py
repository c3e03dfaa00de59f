"""What other apps may import from profiles: frozen data and the hooks they plug into."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class SourceInfo:
    id: UUID
    name: str
    channel: str
    enabled: bool
    identity_kinds: frozenset[str]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An accepted event as routing sees it."""

    id: int
    source_id: UUID
    customer_id: UUID
    type: str
    name: str
    channel: str
    timestamp: datetime
    received_at: datetime


AcceptedListener = Callable[[list[int]], None]
_accepted_listeners: list[AcceptedListener] = []


def on_events_accepted(listener: AcceptedListener) -> None:
    """Register a callable run after commit with the ids of newly accepted events.

    Orchestration uses it to hand the events to routing; the outbox rows written in the same
    transaction make sure a listener that fails (broker down) delays routing and loses nothing.
    """
    if listener not in _accepted_listeners:
        _accepted_listeners.append(listener)


def notify_accepted(event_ids: list[int]) -> None:
    for listener in _accepted_listeners:
        listener(event_ids)
