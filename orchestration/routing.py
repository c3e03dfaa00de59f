"""The routing pipeline: what happens to accepted events, in order.

`route` claims events from the outbox and hands them, in one transaction, to every step of
PIPELINE in turn. Steps run inside the claiming transaction, so their effects and the claim
commit together: an event is never routed twice, and a crash leaves it on the outbox. The order
is the design: each step reads what the steps before it wrote.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from config.core import metrics, observability
from orchestration.models import RouteLog
from profiles import facade as profiles
from profiles.contracts import StoredEvent

logger = logging.getLogger(__name__)

Handler = Callable[[list[StoredEvent]], None]

# Each step takes a chunk of claimed events. Named as import paths (as Django's MIDDLEWARE is):
# the apps import orchestration's dispatch, so orchestration imports their steps only when the
# first chunk is routed.
PIPELINE = (
    # The route log: one row per routed event (the dashboard's routing lag, and the tests').
    "orchestration.routing.record_routed",
    # Consent an event carries is in force before any later step decides to contact anyone.
    "profiles.facade.consent_apply_events",
    # Computed traits: segments' and journeys' conditions read them.
    "profiles.facade.computed_traits_on_routed",
    # Segment membership: journeys trigger on Segment Entered/Exited and read membership.
    "journeys.segments.segments_on_routed",
    # Journeys: start, advance and exit enrollments, with traits and segments current.
    "journeys.on_events.journeys_on_routed",
    # Sessions derived from the events (Session Started, activity keeping them alive).
    "sessions.services.sessions_from_events",
)
_handlers: list[Handler] = []


def handlers() -> list[Handler]:
    """PIPELINE's steps, imported once per process."""
    if not _handlers:
        _handlers.extend(import_string(path) for path in PIPELINE)
    return _handlers


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
            for handler in handlers():
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
