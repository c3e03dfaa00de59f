"""Segments in real time: membership kept as events are routed, not recomputed on a timer.

`segments_on_routed` is a routing handler (orchestration registers it after computed traits, so
traits and computed traits are current). For the customers of a chunk of routed events it
evaluates every enabled segment -- the customers' traits in one query, their memberships in one,
consent and event history only when some segment's condition `needs` them, one query per
(purpose, channel) or per event name for the whole chunk -- then inserts and deletes
SegmentMembership rows and puts a `Segment Entered` / `Segment Exited` track event on the
customer's profile through ingestion (so journeys trigger on it like on any event).

Exactly one event per change, even with two routers racing on one customer: a membership is
inserted `ON CONFLICT DO NOTHING RETURNING` and deleted `RETURNING`, and only the router whose
statement changed the row emits; the messageId is derived from the membership row, so recording
the same change twice stores it once.

Segments are about the customer, not one event: `event.*` fields are not available (they read as
missing; `validate_segment_condition` reports them). `performed` reads the customer's history.
Time-based segments (`now.*`, `within_last`, a `performed` window) also change as time passes:
`segments_recheck` re-evaluates their current members, for a periodic task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.core import metrics
from journeys import contracts
from journeys.conditions import (
    NO_HISTORY,
    Condition,
    ConditionError,
    EvalContext,
    EventHistory,
    compile_condition,
    validate_condition,
)
from journeys.models import Segment, SegmentMembership
from profiles import facade as profiles_facade
from profiles.contracts import CustomerProfile, InternalEvent, SentAs, StoredEvent

SYSTEM_SOURCE_NAME = "throughline-journeys"
HISTORY_LIMIT = 1000  # most recent events per customer and name that `performed` counts
CACHE_MAX_AGE_SECONDS = 30.0  # also reload after this long: a QuerySet.update() leaves updated_at alone
SEGMENT_EVENTS = frozenset({contracts.SEGMENT_ENTERED, contracts.SEGMENT_EXITED})


# --- compiled segments, cached per process ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveSegment:
    id: UUID
    key: str
    name: str
    condition: Condition
    history_names: frozenset[str]  # events its `performed` conditions count
    history_since: timedelta | None  # the longest window among them; None: all time
    consent_pairs: frozenset[tuple[str, str]]  # (purpose, channel) it reads
    time_based: bool


@dataclass(frozen=True, slots=True)
class _Loaded:
    generation: tuple[Any, ...]
    loaded_at: float
    segments: tuple[LiveSegment, ...]
    errors: dict[str, str]


_lock = threading.Lock()
_loaded: _Loaded | None = None


def segments_generation() -> tuple[Any, ...]:
    """Moves whenever a segment is created, changed or deleted: one small aggregate query, in
    SQL rather than the ORM because it runs for every routed chunk."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(id), max(updated_at) FROM {Segment._meta.db_table}")  # noqa: S608 - our table
        row = cursor.fetchone()
    assert row is not None
    return (row[0], row[1])


def segments_changed() -> None:
    """Forget this process's compiled segments (other processes see the generation move)."""
    global _loaded  # noqa: PLW0603 -- the per-process cache
    with _lock:
        _loaded = None


def live_segments() -> tuple[LiveSegment, ...]:
    """Every enabled segment, compiled, in an order where a segment comes after the segments
    its condition refers to. Reloaded when the generation moves (checked once per call, so once
    per routed chunk). A segment whose condition does not compile is left out (and logged in
    `segment_errors`): the admin validates conditions, so this is a row written some other way."""
    global _loaded  # noqa: PLW0603 -- the per-process cache
    generation = segments_generation()
    current = _loaded
    fresh = current is not None and time.monotonic() - current.loaded_at < CACHE_MAX_AGE_SECONDS
    if current is not None and fresh and current.generation == generation:
        return current.segments
    rows = list(Segment.objects.filter(enabled=True).order_by("key").values("id", "key", "name", "condition"))
    compiled: list[LiveSegment] = []
    errors: dict[str, str] = {}
    for row in rows:
        try:
            condition = compile_condition(row["condition"])
        except ConditionError as error:
            errors[row["key"]] = str(error)
            continue
        names, since, pairs = _reads(row["condition"])
        compiled.append(
            LiveSegment(
                id=row["id"],
                key=row["key"],
                name=row["name"],
                condition=condition,
                history_names=frozenset(names),
                history_since=since,
                consent_pairs=frozenset(pairs),
                time_based=bool(condition.needs & {"now", "history"}),
            )
        )
    loaded = _Loaded(generation, time.monotonic(), tuple(_dependency_order(compiled)), errors)
    with _lock:
        _loaded = loaded
    return loaded.segments


def segment_errors() -> dict[str, str]:
    """Segments left out of evaluation because their condition does not compile, by key."""
    current = _loaded
    return dict(current.errors) if current is not None else {}


def validate_segment_condition(spec: Any) -> list[ConditionError]:
    """validate_condition, plus what a segment cannot use: the event being routed (a segment is
    about the customer; `performed` reads their history)."""
    errors = validate_condition(spec)
    if not errors and "event" in compile_condition(spec).needs:
        for path in _event_field_paths(spec, ""):
            errors.append(
                ConditionError(path, "a segment is about the customer: use traits, or `performed` for events")
            )
    return errors


def _event_field_paths(spec: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(spec, dict):
        field = spec.get("field")
        if isinstance(field, str) and field.split(".", 1)[0] == "event":
            found.append(f"{path}/field")
        for key in ("all", "any"):
            for i, child in enumerate(spec.get(key) or []):
                found.extend(_event_field_paths(child, f"{path}/{key}/{i}"))
        if "not" in spec:
            found.extend(_event_field_paths(spec["not"], f"{path}/not"))
    return found


_DURATION_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60}


def _reads(spec: Any) -> tuple[set[str], timedelta | None, set[tuple[str, str]]]:
    """What a (compiled, so well-formed) condition reads that is loaded in bulk: the event names
    its `performed` conditions count and their longest window, and the consent it checks."""
    names: set[str] = set()
    windows: list[timedelta | None] = []
    pairs: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key in ("all", "any"):
            for child in node.get(key) or []:
                walk(child)
        if "not" in node:
            walk(node["not"])
        performed = node.get("performed")
        if isinstance(performed, dict):
            names.add(performed["event"])
            within = performed.get("within")
            windows.append(
                timedelta(seconds=sum(_DURATION_SECONDS[u] * n for u, n in within.items())) if within else None
            )
        consent = node.get("consent")
        if isinstance(consent, dict):
            pairs.add((consent["purpose"], consent["channel"]))
        field = node.get("field")
        if isinstance(field, str) and field.startswith("consent."):
            _, purpose, channel = field.split(".")
            pairs.add((purpose, channel))

    walk(spec)
    since = None if not windows or None in windows else max(w for w in windows if w is not None)
    return names, since, pairs


def _referenced_segments(spec: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(spec, dict):
        if isinstance(spec.get("segment"), str):
            found.add(spec["segment"])
        for key in ("all", "any"):
            for child in spec.get(key) or []:
                found |= _referenced_segments(child)
        if "not" in spec:
            found |= _referenced_segments(spec["not"])
    return found


def _dependency_order(segments: list[LiveSegment]) -> list[LiveSegment]:
    """Segments after the segments they refer to (a cycle is broken at the first repeat)."""
    by_key = {s.key: s for s in segments}
    ordered: list[LiveSegment] = []
    state: dict[str, int] = {}

    def visit(segment: LiveSegment) -> None:
        if state.get(segment.key):
            return
        state[segment.key] = 1
        for key in sorted(_referenced_segments(segment.condition.spec)):
            if key in by_key:
                visit(by_key[key])
        state[segment.key] = 2
        ordered.append(segment)

    for segment in segments:
        visit(segment)
    return ordered


# --- event history over profiles' events ---------------------------------------------------------


class DbEventHistory:
    """A customer's events as `performed` conditions count them: per event name, the most recent
    HISTORY_LIMIT track events (one query per name, on the (customer, timestamp) index), counted
    in Python against `since` and `where`. Preloaded for many customers at once by
    `histories_for`; loaded lazily per name otherwise (decide, the engine)."""

    __slots__ = ("_by_name", "customer_id")

    def __init__(self, customer_id: UUID, preloaded: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.customer_id = customer_id
        self._by_name: dict[str, list[dict[str, Any]]] = dict(preloaded or {})

    def count(self, name: str, since: datetime | None, where: Condition | None) -> int:
        events = self._by_name.get(name)
        if events is None:
            events = _history_rows([self.customer_id], name, None).get(self.customer_id, [])
            self._by_name[name] = events
        total = 0
        for event in events:
            if since is not None and event["timestamp"] < since:
                break  # newest first
            if where is None or where.matches_event(event):
                total += 1
        return total


def _history_rows(customer_ids: list[UUID], name: str, since: datetime | None) -> dict[UUID, list[dict[str, Any]]]:
    """The most recent HISTORY_LIMIT track events named `name` of each customer, newest first,
    shaped like EvalContext.event: one statement for all the customers."""
    return profiles_facade.events_track_recent(customer_ids=customer_ids, name=name, since=since, limit=HISTORY_LIMIT)


def histories_for(
    customer_ids: list[UUID], names: Collection[str], since: dict[str, timedelta | None], now: datetime
) -> dict[UUID, EventHistory]:
    """Histories of many customers, preloaded for these event names (one query per name)."""
    preloaded: dict[UUID, dict[str, list[dict[str, Any]]]] = {c: {} for c in customer_ids}
    for name in sorted(names):
        window = since.get(name)
        rows = _history_rows(customer_ids, name, None if window is None else now - window)
        for customer_id in customer_ids:
            preloaded[customer_id][name] = rows.get(customer_id, [])
    return {c: DbEventHistory(c, preloaded[c]) for c in customer_ids}


# --- evaluation ------------------------------------------------------------------------------------


def _profiles(customer_ids: Iterable[UUID], *, computed: bool) -> dict[UUID, CustomerProfile]:
    """The live profile behind each id (merged ids map to their survivor), keyed by the live id;
    computed traits worked out only when `computed` (a segment reads them)."""
    return {
        profile.id: profile
        for profile in profiles_facade.customer_profiles(customer_ids=customer_ids, computed=computed).values()
    }


def _consent(pairs: set[tuple[str, str]], customer_ids: list[UUID]) -> dict[UUID, dict[str, dict[str, bool]]]:
    consent: dict[UUID, dict[str, dict[str, bool]]] = {c: {} for c in customer_ids}
    for purpose, channel in sorted(pairs):
        try:
            allowed = profiles_facade.consent_allows_many(customer_ids=customer_ids, purpose=purpose, channel=channel)
        except ValueError:  # not a purpose or channel consent knows: nobody consented to it
            allowed = {}
        for customer_id in customer_ids:
            consent[customer_id].setdefault(purpose, {})[channel] = allowed.get(customer_id, False)
    return consent


@dataclass(frozen=True, slots=True)
class Change:
    segment: LiveSegment
    customer_id: UUID
    entered: bool


def evaluate(
    segments: tuple[LiveSegment, ...], customer_ids: Collection[UUID], now: datetime
) -> tuple[list[Change], dict[UUID, CustomerProfile]]:
    """What should change for these customers: (segment, customer, enter/exit) for every
    membership that differs from what the conditions say now."""
    profiles = _profiles(customer_ids, computed=any("computed" in s.condition.needs for s in segments))
    ids = list(profiles)
    if not ids or not segments:
        return [], profiles
    current: dict[UUID, set[str]] = {c: set() for c in ids}
    for customer_id, key in SegmentMembership.objects.filter(customer_id__in=ids).values_list(
        "customer_id", "segment__key"
    ):
        current[customer_id].add(key)
    pairs = set().union(*(s.consent_pairs for s in segments))
    consent = _consent(pairs, ids) if pairs else {}
    names: set[str] = set()
    windows: dict[str, timedelta | None] = {}
    for segment in segments:
        for name in segment.history_names:
            names.add(name)
            known = windows.get(name, timedelta(0))
            windows[name] = (
                None if known is None or segment.history_since is None else max(known, segment.history_since)
            )
    histories = histories_for(ids, names, windows, now) if names else {}
    needs_session = any("session" in s.condition.needs for s in segments)
    fallback = str(getattr(settings, "JOURNEYS_FALLBACK_TIMEZONE", "UTC"))
    changes: list[Change] = []
    for customer_id in ids:
        profile = profiles[customer_id]
        member_of = current[customer_id]
        zone = profile.traits.get("timezone")
        session = contracts.session_for(customer_id) if needs_session else None
        for segment in segments:
            ctx = EvalContext(
                now=now,
                traits=profile.traits,
                computed=profile.computed,
                segments=frozenset(member_of),
                session=session,
                consent=consent.get(customer_id, {}),
                timezone=zone if isinstance(zone, str) and zone else None,
                fallback_timezone=fallback,
                customer_id=str(customer_id),
                history=histories.get(customer_id, NO_HISTORY),
            )
            belongs = segment.condition.evaluate(ctx)
            if belongs != (segment.key in member_of):
                changes.append(Change(segment, customer_id, belongs))
                # Later segments that refer to this one see the new membership.
                if belongs:
                    member_of.add(segment.key)
                else:
                    member_of.discard(segment.key)
    return changes, profiles


# --- applying changes ------------------------------------------------------------------------------


def memberships_apply(*, changes: list[Change], now: datetime) -> list[tuple[Change, int]]:
    """Insert and delete membership rows; returns the changes this call made, each with its
    membership row id (a change another transaction made first is not returned)."""
    made: list[tuple[Change, int]] = []
    table = SegmentMembership._meta.db_table
    entering = sorted((c for c in changes if c.entered), key=lambda c: (str(c.segment.id), str(c.customer_id)))
    leaving = sorted((c for c in changes if not c.entered), key=lambda c: (str(c.segment.id), str(c.customer_id)))
    with connection.cursor() as cursor:
        if entering:
            cursor.execute(
                f"""
                INSERT INTO {table} (segment_id, customer_id, entered_at)
                SELECT s, c, %s FROM unnest(%s::uuid[], %s::uuid[]) AS t(s, c)
                ON CONFLICT (segment_id, customer_id) DO NOTHING
                RETURNING segment_id, customer_id, id
                """,  # noqa: S608 -- the table name is the model's, every value is a parameter
                [now, [str(c.segment.id) for c in entering], [str(c.customer_id) for c in entering]],
            )
            inserted = {(UUID(str(s)), UUID(str(c))): i for s, c, i in cursor.fetchall()}
            made.extend(
                (c, inserted[(c.segment.id, c.customer_id)])
                for c in entering
                if (c.segment.id, c.customer_id) in inserted
            )
        if leaving:
            cursor.execute(
                f"""
                DELETE FROM {table} m USING unnest(%s::uuid[], %s::uuid[]) AS t(s, c)
                WHERE m.segment_id = t.s AND m.customer_id = t.c
                RETURNING m.segment_id, m.customer_id, m.id
                """,  # noqa: S608 -- as above
                [[str(c.segment.id) for c in leaving], [str(c.customer_id) for c in leaving]],
            )
            deleted = {(UUID(str(s)), UUID(str(c))): i for s, c, i in cursor.fetchall()}
            made.extend(
                (c, deleted[(c.segment.id, c.customer_id)]) for c in leaving if (c.segment.id, c.customer_id) in deleted
            )
    return made


def segment_events_emit(
    *, made: list[tuple[Change, int]], now: datetime, hints: Mapping[UUID, SentAs] | None = None
) -> int:
    """Put a Segment Entered/Exited track event on each customer's profile through ingestion
    (routed like any event after commit), addressed as the customer's routed event was when
    `hints` has it. The messageId names the membership row and the change, so recording the same
    change twice stores it once. Returns how many were accepted."""
    if not made:
        return 0
    events = []
    for change, membership_id in made:
        verb = "entered" if change.entered else "exited"
        events.append(
            InternalEvent(
                customer_id=change.customer_id,
                type="track",
                event=contracts.SEGMENT_ENTERED if change.entered else contracts.SEGMENT_EXITED,
                message_id=f"segment:{change.segment.key}:{change.customer_id}:{membership_id}:{verb}",
                timestamp=now,
                properties={"segment": change.segment.key, "segment_name": change.segment.name},
                sent_as=(hints or {}).get(change.customer_id),
            )
        )
    return profiles_facade.event_emit(source_name=SYSTEM_SOURCE_NAME, events=events, received_at=now).accepted


def _count_changes(made: list[tuple[Change, int]]) -> None:
    counts: dict[tuple[str, str], int] = {}
    for change, _ in made:
        label = (change.segment.key, "entered" if change.entered else "exited")
        counts[label] = counts.get(label, 0) + 1

    def record() -> None:
        for (segment, change), n in counts.items():
            metrics.SEGMENT_CHANGES.labels(segment=segment, change=change).inc(n)

    transaction.on_commit(record)


def segments_update(
    *,
    customer_ids: Collection[UUID],
    now: datetime | None = None,
    hints: Mapping[UUID, SentAs] | Callable[[], Mapping[UUID, SentAs]] | None = None,
) -> list[tuple[Change, int]]:
    """Bring these customers' memberships in line with every enabled segment; emits the
    Segment Entered/Exited events. Atomic; returns the changes made. `hints` may be a callable,
    called only when there are segment events to emit."""
    return _update(live_segments(), customer_ids=customer_ids, now=now, hints=hints)


def _update(
    segments: tuple[LiveSegment, ...],
    *,
    customer_ids: Collection[UUID],
    now: datetime | None,
    hints: Mapping[UUID, SentAs] | Callable[[], Mapping[UUID, SentAs]] | None,
) -> list[tuple[Change, int]]:
    if not segments or not customer_ids:
        return []
    at = now or timezone.now()
    # Inside routing's transaction no savepoint is needed (a failure fails the chunk); alone,
    # this opens the transaction.
    with transaction.atomic(savepoint=False):
        changes, _ = evaluate(segments, customer_ids, at)
        made = memberships_apply(changes=changes, now=at)
        if made:
            segment_events_emit(made=made, now=at, hints=hints() if callable(hints) else hints)
            _count_changes(made)
    return made


# Events that only say a session started, ended or resumed (names registered by the sessions
# wiring): they change no trait, consent or computed trait by themselves, so routing them does
# not re-evaluate segments unless a segment reads sessions, counts them in its history, or reads
# a computed trait that counts them. (A time-based condition that came due is picked up by
# segments_recheck or the customer's next event, as without them.)
_session_events: set[str] = set()


def register_session_events(names: Iterable[str]) -> None:
    _session_events.update(names)


def _unread_session_events(segments: tuple[LiveSegment, ...]) -> frozenset[str]:
    if not _session_events or any("session" in s.condition.needs for s in segments):
        return frozenset()
    read: set[str] = set().union(*(s.history_names for s in segments))
    if any("computed" in s.condition.needs for s in segments):
        read |= {d.event_name for d in profiles_facade.computed_definitions()}
    return frozenset(_session_events - read)


def segments_on_routed(events: list[StoredEvent]) -> None:
    """Routing handler: update the segments of the customers these events are about. Our own
    Segment Entered/Exited events are skipped (the pass that emitted them already evaluated every
    segment for that customer), so a change never feeds on itself; so are session lifecycle
    events no segment reads (_unread_session_events)."""
    segments = live_segments()
    if not segments:
        return
    skipped = SEGMENT_EVENTS | _unread_session_events(segments)
    customer_events: dict[UUID, StoredEvent] = {}
    for event in events:
        if event.name in skipped and event.type == "track":
            continue
        latest = customer_events.get(event.customer_id)
        if latest is None or (event.timestamp, event.id) > (latest.timestamp, latest.id):
            customer_events[event.customer_id] = event
    if not customer_events:
        return
    _update(segments, customer_ids=list(customer_events), now=None, hints=lambda: _hints(customer_events))


def _hints(customer_events: Mapping[UUID, StoredEvent]) -> dict[UUID, SentAs]:
    """How each customer's latest routed event was addressed (one query), so the segment events
    resolve to the same profile the same way."""
    who = profiles_facade.events_who(event_ids=[e.id for e in customer_events.values()])
    return {w.customer_id: SentAs(w.user_id or "", w.anonymous_id or "") for w in who.values()}


def segments_recheck(*, batch: int = 500, now: datetime | None = None) -> int:
    """Re-evaluate the members of time-based segments (their condition reads now.* or history,
    e.g. "ordered in the last 30 days"), whose membership changes as time passes without an event.
    Returns how many changes were made. For a periodic task; customers outside such a segment
    enter it on their next event."""
    segments = [s for s in live_segments() if s.time_based]
    if not segments:
        return 0
    changed = 0
    last: UUID | None = None
    while True:
        members = SegmentMembership.objects.filter(segment_id__in=[s.id for s in segments])
        if last is not None:
            members = members.filter(customer_id__gt=last)
        page = list(members.order_by("customer_id").values_list("customer_id", flat=True).distinct()[:batch])
        if not page:
            return changed
        changed += len(segments_update(customer_ids=page, now=now))
        last = page[-1]


# --- merges and erasure ----------------------------------------------------------------------------


def segments_on_customers_merged(merges: dict[UUID, list[UUID]]) -> None:
    """Merge hook: the merged profiles' memberships become their survivor's ({survivor: merged
    ids}; kept once, the earliest entry time wins), in one statement for all the merges of a
    call. Segment events are not emitted here: the survivor's next routed event re-evaluates its
    segments with the merged traits."""
    pairs = [{"merged": str(merged), "survivor": str(survivor)} for survivor, ids in merges.items() for merged in ids]
    table = SegmentMembership._meta.db_table
    with connection.cursor() as cursor:
        # The DELETE and the INSERT see one snapshot; the rows inserted are the survivors' keys,
        # never a merged profile's, so only a survivor's own membership can conflict.
        cursor.execute(
            f"""
            WITH gone AS (
                DELETE FROM {table} WHERE customer_id = ANY(%s::uuid[])
                RETURNING segment_id, customer_id, entered_at
            )
            INSERT INTO {table} (segment_id, customer_id, entered_at)
            SELECT gone.segment_id, m.survivor, min(gone.entered_at)
            FROM gone JOIN json_to_recordset(%s::json) AS m(merged uuid, survivor uuid) ON m.merged = gone.customer_id
            GROUP BY gone.segment_id, m.survivor
            ON CONFLICT (segment_id, customer_id) DO UPDATE
            SET entered_at = LEAST({table}.entered_at, EXCLUDED.entered_at)
            """,  # noqa: S608 -- the table name is the model's, every value is a parameter
            [[pair["merged"] for pair in pairs], orjson.dumps(pairs).decode()],
        )


def segments_on_customers_erased(customer_ids: list[UUID]) -> dict[str, int]:
    """Erase hook: the customers' segment memberships go."""
    deleted, _ = SegmentMembership.objects.filter(customer_id__in=customer_ids).delete()
    return {"segment_memberships": deleted}


# --- reads -------------------------------------------------------------------------------------------
