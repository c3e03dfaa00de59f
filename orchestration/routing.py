"""The routing seam: what happens to accepted events.

`route` claims events from the outbox and hands them, in one transaction, to every registered
handler. The journey engine registers itself here; until it does, routing records that each
event was routed. Handlers run inside the claiming transaction, so their effects and the claim
commit together: an event is never routed twice, and a crash leaves it on the outbox.
"""

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from config.core import metrics, observability
from orchestration.models import RouteLog
from profiles.contracts import StoredEvent
from profiles.selectors import event_message_ids
from profiles.services import outbox_claim

Handler = Callable[[list[StoredEvent]], None]
_handlers: list[Handler] = []


def register_handler(handler: Handler) -> None:
    if handler not in _handlers:
        _handlers.append(handler)


def route(event_ids: list[int], *, traces: dict[str, list[int]] | None = None) -> int:
    """Route the events still waiting on the outbox among `event_ids`; returns how many.

    With tracing on, each event gets a span in its own trace (`traces` names the request each
    came from; see config/core/observability.py); handlers reach it with
    `observability.event_context(event.id)`."""
    with observability.routing_spans(traces) as spans, transaction.atomic():
        events = outbox_claim(event_ids=event_ids)
        if spans is not None and events:
            spans.open(events, event_message_ids(event_ids=[e.id for e in events]))
        for handler in _handlers:
            if events:
                handler(events)
    if events:
        _record_metrics(events)
    return len(events)


def _record_metrics(events: list[StoredEvent]) -> None:
    """After commit: how many were routed and how long after their receipt."""
    now = timezone.now()
    metrics.EVENTS_ROUTED.inc(len(events))
    observe = metrics.ROUTING_LAG.observe
    for event in events:
        observe(max(0.0, (now - event.received_at).total_seconds()))


def record_routed(events: list[StoredEvent]) -> None:
    now = timezone.now()
    RouteLog.objects.bulk_create(
        RouteLog(event_id=e.id, routed_at=now, lag_ms=max(0, int((now - e.received_at).total_seconds() * 1000)))
        for e in events
    )
