"""The routing seam: what happens to accepted events.

`route` claims events from the outbox and hands them, in one transaction, to every registered
handler. The journey engine registers itself here; until it does, routing records that each
event was routed. Handlers run inside the claiming transaction, so their effects and the claim
commit together: an event is never routed twice, and a crash leaves it on the outbox.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from config.core import metrics, observability
from orchestration.models import RouteLog
from profiles import facade as profiles
from profiles.contracts import StoredEvent

logger = logging.getLogger(__name__)

Handler = Callable[[list[StoredEvent]], None]
_handlers: list[Handler] = []


def register_handler(handler: Handler) -> None:
    if handler not in _handlers:
        _handlers.append(handler)


def route(event_ids: list[int], *, traces: dict[str, list[int]] | None = None) -> int:
    """Route the events still waiting on the outbox among `event_ids`; returns how many.

    With tracing on, each event gets a span in its own trace (`traces` names the request each
    came from; see config/core/observability.py); handlers reach it with
    `observability.event_context(event.id)`.

    Up to ROUTING_CLAIM_BACKLOG other events waiting on the outbox are routed with them
    (profiles.facade.outbox_claim), so the count can exceed len(event_ids)."""
    backlog = max(0, settings.ROUTING_CLAIM_BACKLOG - len(event_ids))
    claimed: list[int] = []
    try:
        with observability.routing_spans(traces) as spans, transaction.atomic():
            events = profiles.outbox_claim(event_ids=event_ids, backlog=backlog)
            claimed = [e.id for e in events]
            if spans is not None and events:
                spans.open(events, profiles.event_message_ids(event_ids=claimed))
            for handler in _handlers:
                if events:
                    handler(events)
    except Exception:
        if claimed:
            _count_failure(claimed)
        raise
    if events:
        _record_metrics(events)
    return len(events)


def _count_failure(event_ids: list[int]) -> None:
    """After the rollback: these events failed once, so no other chunk takes them as backlog."""
    try:
        profiles.outbox_failed(event_ids=event_ids)
    except DatabaseError:
        # The database is what failed: the task's retry routes them again regardless.
        logger.warning("could not count a failed routing attempt for %d events", len(event_ids), exc_info=True)


def _record_metrics(events: list[StoredEvent]) -> None:
    """After commit: how many were routed and how long after their receipt."""
    now = timezone.now()
    metrics.EVENTS_ROUTED.inc(len(events))
    observe = metrics.ROUTING_LAG.observe
    for event in events:
        observe(max(0.0, (now - event.received_at).total_seconds()))


def record_routed(events: list[StoredEvent]) -> None:
    """One RouteLog row per event, written by one statement from the ids and receipt times (the
    ORM's bulk_create built a model per event, the largest per-event cost of a chunk)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RouteLog._meta.db_table} (event_id, routed_at, lag_ms) "  # noqa: S608 - our table
            "SELECT id, %s, GREATEST(0, floor(extract(epoch FROM %s - received) * 1000))::int "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS e(id, received)",
            [now, now, [e.id for e in events], [e.received_at for e in events]],
        )
