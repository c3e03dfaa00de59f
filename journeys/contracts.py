"""What other apps may import from journeys, and where orchestration plugs context in.

Journeys never imports orchestration (dependencies point one way), yet its conditions and
templates read the live session state and links such as a form's resume URL, which orchestration
owns. Orchestration registers providers here from its AppConfig.ready(); journeys calls them when
a condition `needs` the session or a template uses `links`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

SEGMENT_ENTERED = "Segment Entered"
SEGMENT_EXITED = "Segment Exited"

SessionProvider = Callable[[UUID], Mapping[str, Any] | None]
LinkProvider = Callable[[UUID], str | None]
LinksProvider = Callable[[UUID], dict[str, str]]

_session_providers: list[SessionProvider] = []
_link_providers: dict[str, LinkProvider] = {}


def register_session_events(names: Iterable[str]) -> None:
    """Name the session lifecycle events (orchestration passes the sessions app's): segments
    re-evaluate on them only when a segment's condition reads sessions."""
    from journeys.segments import register_session_events as register

    register(names)


def register_session_provider(provider: SessionProvider) -> None:
    """Register `provider(customer_id) -> state | None`: the customer's live session state (the
    most recent active session's), read as `session.*` in conditions and templates. The first
    provider with an answer wins. It may raise when its store is down: callers degrade."""
    if provider not in _session_providers:
        _session_providers.append(provider)


def register_link_provider(name: str, provider: LinkProvider) -> None:
    """Register `provider(customer_id) -> url | None`, shown to templates as `links.<name>`
    (e.g. `resume_url`). Registering a name again replaces its provider."""
    _link_providers[name] = provider


def session_providers() -> list[SessionProvider]:
    return list(_session_providers)


def link_providers() -> dict[str, LinkProvider]:
    return dict(_link_providers)


def links_providers() -> list[LinksProvider]:
    """Each named link provider as `customer_id -> {name: url}` (empty when it has no link)."""

    def as_links(name: str, provider: LinkProvider) -> LinksProvider:
        def links(customer_id: UUID) -> dict[str, str]:
            url = provider(customer_id)
            return {name: url} if url else {}

        return links

    return [as_links(name, provider) for name, provider in _link_providers.items()]


def session_for(customer_id: UUID) -> dict[str, Any] | None:
    """The customer's live session state from the first provider that has one."""
    for provider in _session_providers:
        state = provider(customer_id)
        if state:
            return dict(state)
    return None


def links_for(customer_id: UUID) -> dict[str, str]:
    """Every registered link for the customer, by name."""
    links: dict[str, str] = {}
    for name, provider in _link_providers.items():
        url = provider(customer_id)
        if url:
            links[name] = url
    return links


@dataclass(frozen=True, slots=True)
class SegmentRef:
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """A customer entering or leaving a segment, as the `Segment Entered`/`Segment Exited`
    events carry it (properties `segment` and `segment_name`)."""

    customer_id: UUID
    segment: SegmentRef
    entered: bool
    at: datetime

    @property
    def event_name(self) -> str:
        return SEGMENT_ENTERED if self.entered else SEGMENT_EXITED


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Journeys' retention (journeys/retention.py): decisions' partitions, finished enrollments."""
    from journeys import retention  # here, not above: this module stays free of the ORM

    return retention.retention_apply(now=now)
