"""Journeys' routing handler: accepted events advance, exit and start enrollments.

Orchestration calls `journeys_on_routed(events)` inside the transaction that claims the events
from the outbox, so everything done here commits with the claim (or not at all). Per chunk:
the published versions are indexed by trigger (compiled once per process and rebuilt only
when the publish generation changes, checked once per chunk), the active enrollments of the
chunk's customers are locked in one query, and the events are taken in order: each first
reaches the customer's waiting enrollments (exit criteria, awaited events, message outcomes),
then starts the journeys it triggers, as their re-entry policy allows.
"""

import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import OperationalError, connection

from config.core import metrics, observability
from journeys import selectors
from journeys.engine import machine
from journeys.engine.model import ACTIVE, SEGMENT_ENTERED, CompiledJourney, EnrollmentState, EventView, compile_journey
from journeys.models import Enrollment, EnrollmentStatus, JourneyVersion, VersionStatus
from journeys.world import DbWorld, enrollment_state, enrollments_save
from profiles.contracts import StoredEvent

ENROLLMENT_NAMESPACE = uuid.UUID("5b0c5a2e-8f43-4c1e-9a53-1f6f3f2b7c11")


@dataclass(frozen=True, slots=True)
class LiveVersion:
    journey_id: UUID
    version_id: UUID
    number: int
    compiled: CompiledJourney


@dataclass
class TriggerIndex:
    generation: tuple[Any, ...]
    by_event: dict[str, list[LiveVersion]] = field(default_factory=dict)
    by_segment: dict[str, list[LiveVersion]] = field(default_factory=dict)
    by_journey: dict[UUID, LiveVersion] = field(default_factory=dict)

    def triggered_by(self, event: EventView) -> list[LiveVersion]:
        found = list(self.by_event.get(event.name, ()))
        if event.name == SEGMENT_ENTERED:
            found.extend(self.by_segment.get(str(event.properties.get("segment", "")), ()))
        return found


class _Cache:
    """Per process: compiled versions by id (immutable once published) and the trigger index."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.versions: dict[UUID, LiveVersion] = {}
        self.index: TriggerIndex | None = None


_cache = _Cache()


def publish_generation() -> tuple[Any, ...]:
    """Changes whenever a version is published or archived: one small aggregate query, in SQL
    rather than the ORM because it runs for every routed chunk."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(id), max(updated_at) FROM {JourneyVersion._meta.db_table} WHERE status = %s",  # noqa: S608
            [VersionStatus.PUBLISHED.value],
        )
        row = cursor.fetchone()
    assert row is not None
    return (row[0], row[1])


def invalidate() -> None:
    """Forget this process's index (a publish here); other processes see the generation change."""
    with _cache.lock:
        _cache.index = None


def live_version(version: JourneyVersion) -> LiveVersion:
    """A version compiled once per process. Versions are immutable once published."""
    cached = _cache.versions.get(version.id)
    if cached is None:
        compiled = compile_journey(key=version.journey.key, version_id=str(version.id), definition=version.definition)
        cached = LiveVersion(
            journey_id=version.journey_id, version_id=version.id, number=version.number, compiled=compiled
        )
        with _cache.lock:
            _cache.versions[version.id] = cached
    return cached


def live_versions(version_ids: set[UUID]) -> dict[UUID, LiveVersion]:
    missing = {v for v in version_ids if v not in _cache.versions}
    if missing:
        for version in selectors.versions_by_id(version_ids=missing).values():
            live_version(version)
    return {v: _cache.versions[v] for v in version_ids if v in _cache.versions}


def trigger_index() -> TriggerIndex:
    generation = publish_generation()
    current = _cache.index
    if current is not None and current.generation == generation:
        return current
    index = TriggerIndex(generation=generation)
    for version in selectors.versions_published():
        live = live_version(version)
        trigger = version.definition["trigger"]
        index.by_journey[version.journey_id] = live
        if trigger["type"] == "event":
            index.by_event.setdefault(trigger["event"], []).append(live)
        elif trigger["type"] == "segment_entered":
            index.by_segment.setdefault(trigger["segment"], []).append(live)
    with _cache.lock:
        _cache.index = index
    return index


def event_view(event: StoredEvent, properties: dict[str, Any] | None) -> EventView:
    return EventView(
        id=event.id,
        name=event.name,
        type=event.type,
        channel=event.channel,
        properties=properties or {},
        timestamp=event.timestamp,
        customer_id=str(event.customer_id),
    )


def journeys_on_routed(events: list[StoredEvent], *, now: datetime | None = None) -> None:
    """Advance, exit and start enrollments for a chunk of routed events (inside routing's
    transaction)."""
    if not events:
        return
    index = trigger_index()
    ordered = sorted(events, key=lambda e: e.id)
    customers = {e.customer_id for e in ordered}
    rows = list(
        Enrollment.objects.select_for_update(of=("self",))
        .select_related("journey")
        .filter(customer_id__in=customers, status=EnrollmentStatus.ACTIVE)
        .order_by("id")
    )
    # Only the events of customers with an active enrollment, or with an event that may start
    # one, can do anything here: the rest (most page views, our own lifecycle events) are left
    # out before their properties are read.
    concerned = {row.customer_id for row in rows} | {
        e.customer_id for e in ordered if e.name in index.by_event or e.name == SEGMENT_ENTERED
    }
    if not concerned:
        return
    ordered = [e for e in ordered if e.customer_id in concerned]
    properties = selectors.event_properties(event_ids=[e.id for e in ordered])
    views = [event_view(e, properties.get(e.id)) for e in ordered]
    versions = live_versions({row.version_id for row in rows})
    world = DbWorld(now=now)
    active: dict[UUID, list[tuple[Enrollment, EnrollmentState]]] = defaultdict(list)
    for row in rows:
        active[row.customer_id].append((row, enrollment_state(row)))
    changed: dict[UUID, tuple[Enrollment, EnrollmentState]] = {}

    candidates = {(live.journey_id, UUID(view.customer_id)) for view in views for live in index.triggered_by(view)}
    past = selectors.past_entries(pairs=candidates)
    entered: dict[tuple[UUID, UUID], datetime] = {}
    # Enrollments this chunk starts, inserted together before the chunk's history is written.
    pending: dict[tuple[UUID, UUID], Enrollment] = {}

    for view in views:
        # Steps run for this event (and what they enqueue: deliveries) join the event's trace.
        with observability.event_context(view.id or 0):
            _on_event(
                view,
                active=active,
                versions=versions,
                index=index,
                world=world,
                past=past,
                entered=entered,
                changed=changed,
                pending=pending,
            )
    enrollments_insert(list(pending.values()))
    world.flush()
    enrollments_save([(row.status, state) for row, state in changed.values()])


def _on_event(
    view: EventView,
    *,
    active: dict[UUID, list[tuple[Enrollment, EnrollmentState]]],
    versions: dict[UUID, LiveVersion],
    index: "TriggerIndex",
    world: DbWorld,
    past: dict[tuple[UUID, UUID], selectors.PastEntries],
    entered: dict[tuple[UUID, UUID], datetime],
    changed: dict[UUID, tuple[Enrollment, EnrollmentState]],
    pending: dict[tuple[UUID, UUID], Enrollment],
) -> None:
    """One event: advance the customer's active enrollments, then start those it triggers."""
    customer_id = UUID(view.customer_id)
    for row, state in list(active[customer_id]):
        live = versions.get(row.version_id)
        if live is None:
            continue
        if machine.on_event(live.compiled, state, world, view):
            changed[row.id] = (row, state)
            world.forget(view.customer_id)
        if state.status != ACTIVE:
            active[customer_id].remove((row, state))
    for live in index.triggered_by(view):
        started = _start(
            live, view, world=world, past=past, entered=entered, active=active[customer_id], pending=pending
        )
        if started is not None:
            active[customer_id].append(started)
            changed[started[0].id] = started


def _start(
    live: LiveVersion,
    view: EventView,
    *,
    world: DbWorld,
    past: dict[tuple[UUID, UUID], selectors.PastEntries],
    entered: dict[tuple[UUID, UUID], datetime],
    active: list[tuple[Enrollment, EnrollmentState]],
    pending: dict[tuple[UUID, UUID], Enrollment],
) -> tuple[Enrollment, EnrollmentState] | None:
    journey = live.compiled
    customer_id = UUID(view.customer_id)
    if not machine.trigger_matches(journey, view):
        return None
    if journey.trigger_condition is not None:
        probe = EnrollmentState(
            id="", journey=journey.key, version="", customer_id=view.customer_id, entered_at=world.now()
        )
        ctx = world.context(probe, event=view, needs=journey.trigger_condition.needs | {"event"})
        if not journey.trigger_condition.evaluate(ctx):
            return None
    previous: list[tuple[datetime, str]] = []
    before = past.get((live.journey_id, customer_id))
    if before is not None and before.last_entered_at is not None:
        previous.append((before.last_entered_at, "ended"))
    if (live.journey_id, customer_id) in entered:
        previous.append((entered[(live.journey_id, customer_id)], "ended"))
    if any(row.journey_id == live.journey_id for row, state in active if state.status == ACTIVE):
        previous.append((world.now(), ACTIVE))
    allowed, _why = machine.reentry_allows(journey, previous=previous, now=world.now())
    if not allowed:
        return None
    return enrollment_create(
        live=live, customer_id=customer_id, world=world, event=view, entered=entered, pending=pending
    )


def enrollment_id(journey_id: UUID, customer_id: UUID, event: EventView | None) -> UUID:
    """An enrollment started by a stored event has an id derived from (journey, customer,
    event): a routing task redelivered after a crash starts the same enrollment, so its steps'
    keys (deliveries, webhooks' Idempotency-Key) are the same as the first attempt's."""
    if event is None or event.id is None:
        return uuid.uuid4()
    return uuid.uuid5(ENROLLMENT_NAMESPACE, f"{journey_id}:{customer_id}:{event.id}")


def _insert_enrollment(row: Enrollment) -> bool:
    """Insert unless the customer is already active in the journey (the partial unique index)
    or this id exists (the same event started it before): ON CONFLICT DO NOTHING, no savepoint."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO journeys_enrollment (id, created_at, updated_at, journey_id, version_id, customer_id, "
            "status, step, visit, waiting_for, state, trigger_event_id, entered_at, ended_at, end_reason, converted) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, NULL, '{}', %s, %s, NULL, '', false) "
            "ON CONFLICT DO NOTHING RETURNING id",
            [
                row.id,
                row.created_at,
                row.updated_at,
                row.journey_id,
                row.version_id,
                row.customer_id,
                row.status,
                row.step,
                row.trigger_event_id,
                row.entered_at,
            ],
        )
        return cursor.fetchone() is not None


class EnrollmentStartConflict(OperationalError):
    """Another transaction started one of this chunk's enrollments first (the same customer's
    events routed at the same time, or an entry through the API). The chunk's steps already
    ran on the assumption that it had not, so the chunk rolls back; routing's task retries it
    (a transient database error), and the retry sees the other enrollment under its lock."""


def enrollments_insert(rows: list[Enrollment]) -> None:
    """Insert the enrollments a chunk started, in one statement (ON CONFLICT DO NOTHING: a
    conflict raises EnrollmentStartConflict)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO journeys_enrollment (id, created_at, updated_at, journey_id, version_id, customer_id, "
            "status, step, visit, waiting_for, state, trigger_event_id, entered_at, ended_at, end_reason, converted) "
            "SELECT id, created_at, updated_at, journey_id, version_id, customer_id, status, step, 0, NULL, '{}', "
            "trigger_event_id, entered_at, NULL, '', false "
            "FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[], %s::uuid[], %s::uuid[], %s::uuid[], "
            "%s::text[], %s::text[], %s::bigint[], %s::timestamptz[]) "
            "AS r(id, created_at, updated_at, journey_id, version_id, customer_id, status, step, trigger_event_id, "
            "entered_at) "
            "ON CONFLICT DO NOTHING RETURNING id",
            [
                [r.id for r in rows],
                [r.created_at for r in rows],
                [r.updated_at for r in rows],
                [r.journey_id for r in rows],
                [r.version_id for r in rows],
                [r.customer_id for r in rows],
                [r.status for r in rows],
                [r.step for r in rows],
                [r.trigger_event_id for r in rows],
                [r.entered_at for r in rows],
            ],
        )
        inserted = len(cursor.fetchall())
    if inserted != len(rows):
        raise EnrollmentStartConflict(f"{len(rows) - inserted} of this chunk's enrollments were started concurrently")


def enrollment_create(
    *,
    live: LiveVersion,
    customer_id: UUID,
    world: DbWorld,
    event: EventView | None,
    entered: dict[tuple[UUID, UUID], datetime] | None = None,
    pending: dict[tuple[UUID, UUID], Enrollment] | None = None,
) -> tuple[Enrollment, EnrollmentState] | None:
    """Insert an active enrollment and run it from the start; None when the customer is
    already in the journey (a concurrent start won the unique constraint). With `pending`
    (PostgreSQL; by journey and customer), the row is added to it for `enrollments_insert` instead: the caller already
    holds the customers' active enrollments locked, so only a concurrent start can conflict."""
    now = world.now()
    row = Enrollment(
        id=enrollment_id(live.journey_id, customer_id, event),
        journey_id=live.journey_id,
        version_id=live.version_id,
        customer_id=customer_id,
        status=EnrollmentStatus.ACTIVE,
        step=live.compiled.definition["start"],
        visit=0,
        state={},
        entered_at=now,
        trigger_event_id=event.id if event is not None else None,
        created_at=now,
        updated_at=now,
    )
    if pending is not None:
        # Inserted one by one, a second start of the journey in the same chunk met the first
        # one's row (still active until the chunk's end) and did not start: the same here.
        if (live.journey_id, customer_id) in pending:
            return None
        pending[(live.journey_id, customer_id)] = row
    elif not _insert_enrollment(row):
        return None
    if entered is not None:
        entered[(live.journey_id, customer_id)] = now
    metrics.JOURNEY_ENTRIES.labels(journey=live.compiled.key).inc()
    state = enrollment_state(row)
    state.journey = live.compiled.key
    state.step = ""
    if parent := observability.traceparent():
        # The trace of the event that started it: its timers fire in that trace (tracing on only).
        state.state["traceparent"] = parent
    machine.start(live.compiled, state, world, event=event)
    return row, state
