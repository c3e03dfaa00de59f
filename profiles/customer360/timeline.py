"""A customer's timeline: events on every channel, sessions starting and ending, merges and
unmerges, consent changes, newest first, paged with a keyset cursor.

Each source is read newest first from an index on (customer, time) with the cursor's position as
a bound and `limit + 1` rows, and the sources are merged: the same plan as a UNION ALL of
per-source `ORDER BY ... LIMIT` subqueries, but open to sources other apps register
(contracts.on_timeline) without profiles knowing their tables. A page costs a handful of index
range scans of `limit + 1` rows each, however deep it is: the cursor bounds the scans, there is
no OFFSET.

Order is total: (at, kind, key) descending, where `key` orders entries of one kind at the same
instant (event ids zero-padded, UUIDs as hex, so text order is the database's order).
"""

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.db.models import Q, QuerySet

from config.core.errors import BadRequest
from profiles import contracts
from profiles.contracts import TimelineEntry, TimelineQuery
from profiles.models import Customer, Event, MergeRecord, Session
from profiles.privacy.models import ConsentChange
from profiles.privacy.selectors import customer_cluster_ids

Position = tuple[datetime, str, str]

EVENT = "event"
SESSION_STARTED = "session_started"
SESSION_ENDED = "session_ended"
CONSENT_CHANGE = "consent_change"
MERGE = "merge"
UNMERGE = "unmerge"
_NUMERIC_KINDS = frozenset({EVENT, CONSENT_CHANGE, MERGE, UNMERGE})
_UUID_KINDS = frozenset({SESSION_STARTED, SESSION_ENDED})


@dataclass(frozen=True, slots=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next: Position | None


def _numeric_key(value: int) -> str:
    return f"{value:020d}"


def _keyset(
    queryset: QuerySet[Any], before: Position | None, *, kind: str, at: str, key: str, key_value: Callable[[str], Any]
) -> QuerySet[Any]:
    """Rows strictly after the cursor in (at, kind, key) descending order. The redundant
    `at <= cursor` bound is what lets the index range scan start at the cursor."""
    if before is None:
        return queryset
    cursor_at, cursor_kind, cursor_key = before
    if kind < cursor_kind:
        return queryset.filter(**{f"{at}__lte": cursor_at})
    if kind > cursor_kind:
        return queryset.filter(**{f"{at}__lt": cursor_at})
    return queryset.filter(**{f"{at}__lte": cursor_at}).filter(
        Q(**{f"{at}__lt": cursor_at}) | Q(**{at: cursor_at, f"{key}__lt": key_value(cursor_key)})
    )


def _uuid_key(value: str) -> UUID:
    return UUID(hex=value)


def _events(query: TimelineQuery) -> list[TimelineEntry]:
    rows = (
        _keyset(
            Event.objects.filter(customer_id=query.customer_id),
            query.before,
            kind=EVENT,
            at="timestamp",
            key="id",
            key_value=int,
        )
        .order_by("-timestamp", "-id")
        .values_list(
            "id", "timestamp", "type", "name", "channel", "source_id", "session_id", "message_id", "properties"
        )[: query.limit]
    )
    return [
        TimelineEntry(
            at=timestamp,
            kind=EVENT,
            key=_numeric_key(event_id),
            id=str(event_id),
            channel=channel,
            data={
                "type": kind,
                "name": name,
                "source_id": source_id,
                "session_id": session_id,
                "message_id": message_id,
                "properties": properties,
            },
        )
        for event_id, timestamp, kind, name, channel, source_id, session_id, message_id, properties in rows
    ]


def _sessions(kind: str, at: str) -> Callable[[TimelineQuery], list[TimelineEntry]]:
    def source(query: TimelineQuery) -> list[TimelineEntry]:
        queryset = Session.objects.filter(customer_id=query.customer_id)
        if kind == SESSION_ENDED:
            queryset = queryset.exclude(ended_at=None)
        rows = _keyset(queryset, query.before, kind=kind, at=at, key="id", key_value=_uuid_key).order_by(
            f"-{at}", "-id"
        )[: query.limit]
        return [
            TimelineEntry(
                at=getattr(session, at),
                kind=kind,
                key=session.id.hex,
                id=str(session.id),
                channel=session.channel,
                data={
                    "device": session.device,
                    "started_at": session.started_at,
                    "last_seen_at": session.last_seen_at,
                    "ended_at": session.ended_at,
                },
            )
            for session in rows
        ]

    return source


def _consent_changes(query: TimelineQuery) -> list[TimelineEntry]:
    rows = _keyset(
        ConsentChange.objects.filter(customer_id__in=query.customer_ids),
        query.before,
        kind=CONSENT_CHANGE,
        at="changed_at",
        key="id",
        key_value=int,
    ).order_by("-changed_at", "-id")[: query.limit]
    return [
        TimelineEntry(
            at=change.changed_at,
            kind=CONSENT_CHANGE,
            key=_numeric_key(change.id),
            id=str(change.id),
            channel="",
            data={
                "purpose": change.purpose,
                "channel": change.channel,
                "status": change.status,
                "origin": change.origin,
                "source_id": change.source_id,
                "source_label": change.source_label,
                "actor": change.actor,
                "event_id": change.event_id,
                "applied": change.applied,
            },
        )
        for change in rows
    ]


def _merges(kind: str, at: str) -> Callable[[TimelineQuery], list[TimelineEntry]]:
    def source(query: TimelineQuery) -> list[TimelineEntry]:
        queryset = MergeRecord.objects.filter(survivor_id__in=query.customer_ids)
        if kind == UNMERGE:
            queryset = queryset.exclude(undone_at=None)
        rows = _keyset(queryset, query.before, kind=kind, at=at, key="id", key_value=int).order_by(f"-{at}", "-id")[
            : query.limit
        ]
        return [
            TimelineEntry(
                at=getattr(record, at),
                kind=kind,
                key=_numeric_key(record.id),
                id=str(record.id),
                channel="",
                data={
                    "survivor_id": record.survivor_id,
                    "merged_id": record.merged_id,
                    "reason": record.reason,
                    "actor": record.undone_by if kind == UNMERGE else record.actor,
                },
            )
            for record in rows
        ]

    return source


BUILT_IN: list[tuple[frozenset[str], contracts.TimelineSource]] = [
    (frozenset({EVENT}), _events),
    (frozenset({SESSION_STARTED}), _sessions(SESSION_STARTED, "started_at")),
    (frozenset({SESSION_ENDED}), _sessions(SESSION_ENDED, "ended_at")),
    (frozenset({CONSENT_CHANGE}), _consent_changes),
    (frozenset({MERGE}), _merges(MERGE, "created_at")),
    (frozenset({UNMERGE}), _merges(UNMERGE, "undone_at")),
]


def timeline_kinds() -> list[str]:
    return sorted({kind for kinds, _ in BUILT_IN + contracts.timeline_sources() for kind in kinds})


def customer_timeline(
    *, customer: Customer, before: Position | None = None, limit: int = 50, kinds: set[str] | None = None
) -> TimelinePage:
    """One page of the customer's timeline (with the profiles merged into it), newest first,
    and the position to continue from, or None on the last page."""
    query = TimelineQuery(
        customer_id=customer.id,
        customer_ids=tuple(customer_cluster_ids(customer_id=customer.id)),
        before=before,
        limit=limit + 1,
    )
    entries: list[TimelineEntry] = []
    for source_kinds, source in BUILT_IN + contracts.timeline_sources():
        if kinds is None or source_kinds & kinds:
            entries.extend(e for e in source(query) if kinds is None or e.kind in kinds)
    entries.sort(key=lambda e: (e.at, e.kind, e.key), reverse=True)
    page = entries[:limit]
    more = len(entries) > limit
    return TimelinePage(entries=page, next=(page[-1].at, page[-1].kind, page[-1].key) if more and page else None)


def cursor_encode(position: Position) -> str:
    at, kind, key = position
    return base64.urlsafe_b64encode(orjson.dumps([at.isoformat(), kind, key])).decode().rstrip("=")


def cursor_decode(cursor: str) -> Position:
    """The position a cursor names; a 400 for anything this module did not write."""
    try:
        at, kind, key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(kind, str) or not isinstance(key, str) or len(key) > 64:
            raise ValueError(cursor)
        if kind in _NUMERIC_KINDS and not (re.fullmatch(r"[0-9]{1,20}", key) and int(key) < 2**63):
            raise ValueError(cursor)
        if kind in _UUID_KINDS:
            UUID(hex=key)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest("invalid cursor", code="invalid_cursor") from None
    return when, kind, key
