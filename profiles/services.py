"""Writes on sources, and the event outbox that routing consumes."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from config.core.secrets import digest, new_secret
from profiles.contracts import EmitResult, InternalEvent, SourceInfo, StoredEvent
from profiles.models import EventOutbox, Source
from profiles.selectors import customer_message_ids


def source_create(
    *, name: str, channel: str, identity_kinds: list[str] | None = None, allowed_origins: list[str] | None = None
) -> tuple[Source, str]:
    """Register a source; returns it with its write key, which is stored only as a hash."""
    write_key = new_secret("tlw")
    source = Source(
        name=name,
        channel=channel,
        write_key_hash=digest(write_key),
        write_key_prefix=write_key[:8],
        identity_kinds=identity_kinds or [],
        allowed_origins=allowed_origins or [],
    )
    source.full_clean()
    source.save()
    return source, write_key


# Throughline's own sources (message outcomes, segment changes, journeys' identify and track
# calls) are named with this prefix; handlers that follow a customer's own activity (sessions)
# leave their events out.
SYSTEM_SOURCE_PREFIX = "throughline-"


def system_source(*, name: str) -> SourceInfo:
    """The source one of Throughline's own parts ingests its events under; created on first use."""
    if not name.startswith(SYSTEM_SOURCE_PREFIX):
        raise ValueError(f"a system source's name starts with {SYSTEM_SOURCE_PREFIX!r}")
    row = Source.objects.filter(name=name).first()
    if row is None:
        try:
            with transaction.atomic():
                row, _ = source_create(name=name, channel="server")
        except IntegrityError:
            row = Source.objects.filter(name=name).first()
    assert row is not None
    return SourceInfo(
        id=row.id, name=row.name, channel=row.channel, enabled=True, identity_kinds=frozenset(row.identity_kinds or ())
    )


def event_emit(*, source_name: str, events: Sequence[InternalEvent], received_at: datetime | None = None) -> EmitResult:
    """Ingest identify and track calls Throughline's own parts make about customers, under the
    system source `source_name`, each addressed the one way (selectors.customer_message_ids).
    They are stored and routed like any source's events; their messageIds make a repeat store
    nothing. An event whose customer nothing addresses is not sent: the result names it."""
    from profiles.ingest import event_ingest

    sent_as = {e.customer_id: e.sent_as for e in events if e.sent_as is not None}
    addresses = customer_message_ids(customer_ids={e.customer_id for e in events}, sent_as=sent_as)
    messages: list[dict[str, Any]] = []
    unaddressed: list[UUID] = []
    for event in events:
        address = addresses.get(event.customer_id)
        if address is None:
            unaddressed.append(event.customer_id)
            continue
        message: dict[str, Any] = {
            "type": event.type,
            "messageId": event.message_id,
            "timestamp": event.timestamp.isoformat(),
            **address,
        }
        if event.event:
            message["event"] = event.event
        if event.properties:
            message["properties"] = dict(event.properties)
        if event.traits:
            message["traits"] = dict(event.traits)
        messages.append(message)
    accepted = 0
    if messages:
        accepted = event_ingest(
            source=system_source(name=source_name),
            raw_messages=messages,
            call_type=None,
            received_at=received_at or timezone.now(),
        ).accepted
    return EmitResult(accepted=accepted, unaddressed=tuple(dict.fromkeys(unaddressed)))


def source_rotate_key(*, source: Source) -> str:
    """Replace a source's write key; the old one stops working at once (after the source cache)."""
    write_key = new_secret("tlw")
    source.write_key_hash = digest(write_key)
    source.write_key_prefix = write_key[:8]
    source.save(update_fields=["write_key_hash", "write_key_prefix", "updated_at"])
    return write_key


# The columns of a StoredEvent, in its field order. `consent` is the test that
# profiles.privacy.services.consent_apply_events makes of each event.
_STORED_EVENT = (
    "e.id, e.source_id, e.customer_id, e.type, e.name, e.channel, e.timestamp, e.received_at, "
    "(e.context ? 'consent' OR (e.type = 'identify' AND e.properties ? 'consent'))"
)

# Every claim statement below is shaped so that its plan cannot depend on the statistics: no
# join for the planner to choose. The rows to delete are collected first, once, into an array
# (an InitPlan: `= ANY(ARRAY(SELECT ...))`), the DELETE finds them by primary key, and the
# events are read by primary key from the array of what was deleted. Why: an ANALYZE of the
# drained outbox (autovacuum's, at a quiet moment) records 0 rows over its remaining pages, and
# the planner then takes the outbox for a one-row table until the next ANALYZE. With the former
# shape (`DELETE ... WHERE event_id IN (SELECT ... FOR UPDATE SKIP LOCKED)`, then a join with
# the events) it chose a nested loop that re-ran the locking subquery once per outbox row: the
# backlog claim of 480 rows from a 40,000-row outbox ran for over 600 s instead of about 10 ms
# (tests/orchestration/test_claim_plan.py).
_CLAIM_SQL = f"""
WITH claimed AS (
    DELETE FROM profiles_eventoutbox WHERE event_id = ANY(%s) RETURNING event_id
)
SELECT {_STORED_EVENT}
FROM profiles_event e WHERE e.id = ANY(ARRAY(SELECT event_id FROM claimed))
ORDER BY e.id
"""  # noqa: S608 - constant fragments only


# The same, for a router that also takes the backlog: named rows another router holds are
# skipped rather than waited for. That router took them as its backlog and is routing them; had
# this one waited, two routers behind the same queue would take turns instead of working side by
# side. (Should that router fail, they stay on the outbox for the sweeper.)
_CLAIM_SKIP_LOCKED_SQL = f"""
WITH claimed AS (
    DELETE FROM profiles_eventoutbox WHERE event_id = ANY(ARRAY(
        SELECT event_id FROM profiles_eventoutbox WHERE event_id = ANY(%s) FOR UPDATE SKIP LOCKED
    )) RETURNING event_id
)
SELECT {_STORED_EVENT}
FROM profiles_event e WHERE e.id = ANY(ARRAY(SELECT event_id FROM claimed))
ORDER BY e.id
"""  # noqa: S608 - constant fragments only


# The backlog: other rows waiting on the outbox, oldest first, that no router holds (SKIP LOCKED:
# this statement never waits) and that never failed a routing attempt (attempts = 0, so one
# event that makes a handler fail cannot drag every other chunk down with it).
_CLAIM_BACKLOG_SQL = f"""
WITH claimed AS (
    DELETE FROM profiles_eventoutbox WHERE event_id = ANY(ARRAY(
        SELECT event_id FROM profiles_eventoutbox
        WHERE attempts = 0 AND event_id <> ALL(%s)
        ORDER BY enqueued_at LIMIT %s
        FOR UPDATE SKIP LOCKED
    )) RETURNING event_id
)
SELECT {_STORED_EVENT}
FROM profiles_event e WHERE e.id = ANY(ARRAY(SELECT event_id FROM claimed))
"""  # noqa: S608 - constant fragments only

# The backlog's oldest-first scan is the one choice left to the planner: walk the enqueued_at
# index (stopping at LIMIT), or read the whole outbox and sort it. With no statistics on
# `attempts` (the outbox was empty at the last ANALYZE) it guesses 0.5 % of rows qualify and may
# take the sort: the whole outbox read for every chunk. These settings, for that one statement
# (set in the transaction, restored right after it), leave it the index.
_INDEX_ONLY = "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)"
_PLANNER_RESTORED = (
    "SELECT set_config(name, reset_val, true) FROM pg_settings WHERE name IN ('enable_seqscan', 'enable_sort')"
)


def outbox_claim(*, event_ids: list[int], backlog: int = 0) -> list[StoredEvent]:
    """Take events off the outbox for routing, in the caller's transaction, in id order.

    Must run inside transaction.atomic(): the rows stay locked until the caller commits the
    routing's effects, so a concurrent router of the same ids waits and then finds nothing.
    With `backlog`, up to that many other waiting events come along (see _CLAIM_BACKLOG_SQL):
    a router that has fallen behind routes the queue in large chunks, whose fixed cost is
    shared, and the tasks that named those events find nothing left to do. In that mode no
    statement waits for another router's rows (SKIP LOCKED), so routers never wait on each other.
    """
    assert connection.in_atomic_block, "outbox_claim needs the caller's transaction"
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SKIP_LOCKED_SQL if backlog > 0 else _CLAIM_SQL, [event_ids])
        events = [StoredEvent(*row) for row in cursor.fetchall()]
        if backlog > 0:
            cursor.execute(_INDEX_ONLY)
            cursor.execute(_CLAIM_BACKLOG_SQL, [event_ids, backlog])
            more = cursor.fetchall()
            # (Should the claim fail, the transaction's rollback restores them.)
            cursor.execute(_PLANNER_RESTORED)
            if more:
                events = sorted(events + [StoredEvent(*row) for row in more], key=lambda e: e.id)
        return events


def outbox_failed(*, event_ids: list[int]) -> None:
    """Count a failed routing attempt against these events (still on the outbox after the
    rollback): they are no longer taken as another chunk's backlog, only by their own task's
    retry or the sweeper."""
    EventOutbox.objects.filter(event_id__in=event_ids).update(attempts=F("attempts") + 1)


def outbox_reclaim_stale(*, older_than: timedelta, limit: int, now: datetime | None = None) -> list[int]:
    """Mark outbox rows whose routing has not completed within `older_than` as re-enqueued and
    return their ids. Rows being routed right now are locked and skipped."""
    now = now or timezone.now()
    cutoff = now - older_than
    with transaction.atomic():
        stale = list(
            EventOutbox.objects.select_for_update(skip_locked=True)
            .filter(enqueued_at__lte=cutoff)
            .order_by("enqueued_at")
            .values_list("event_id", flat=True)[:limit]
        )
        if stale:
            EventOutbox.objects.filter(event_id__in=stale).update(enqueued_at=now, attempts=F("attempts") + 1)
    return stale
