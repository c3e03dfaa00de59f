"""The routing seam: what happens to accepted events.

`route` claims events from the outbox and hands them, in one transaction, to every registered
handler. The journey engine registers itself here; until it does, routing records that each
event was routed. Handlers run inside the claiming transaction, so their effects and the claim
commit together: an event is never routed twice, and a crash leaves it on the outbox.
"""

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from orchestration.models import RouteLog
from profiles.contracts import StoredEvent
from profiles.services import outbox_claim

Handler = Callable[[list[StoredEvent]], None]
_handlers: list[Handler] = []


def register_handler(handler: Handler) -> None:
    if handler not in _handlers:
        _handlers.append(handler)


def route(event_ids: list[int]) -> int:
    """Route the events still waiting on the outbox among `event_ids`; returns how many."""
    with transaction.atomic():
        events = outbox_claim(event_ids=event_ids)
        for handler in _handlers:
            if events:
                handler(events)
    return len(events)


def record_routed(events: list[StoredEvent]) -> None:
    now = timezone.now()
    RouteLog.objects.bulk_create(
        RouteLog(event_id=e.id, routed_at=now, lag_ms=max(0, int((now - e.received_at).total_seconds() * 1000)))
        for e in events
    )
