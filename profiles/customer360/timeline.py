"""A customer's timeline: events on every channel, sessions starting and ending, merges and
unmerges, consent changes, newest first, paged with a keyset cursor. Sessions are orchestration's
(registered through contracts.on_timeline, as any other app's entries are).

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.db import connection

from config.core.errors import BadRequest
from profiles import contracts
from profiles.contracts import TimelineEntry, TimelineQuery

Position = tuple[datetime, str, str]

EVENT = "event"
# Session entries come from orchestration; their keys are UUIDs, which the cursor checks.
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


# The kinds the built-in statement below reads; other apps add theirs (contracts.timeline_sources).
BUILT_IN_KINDS = (EVENT, CONSENT_CHANGE, MERGE, UNMERGE)


def timeline_kinds() -> list[str]:
    return sorted({*BUILT_IN_KINDS, *(kind for kinds, _ in contracts.timeline_sources() for kind in kinds)})


# The built-in sources as one statement for PostgreSQL: the same per-source plans (index range
# scan from the cursor, LIMIT n+1) as a UNION ALL, in one round trip and without the ORM's
# per-query overhead, which on a busy machine costs more than the scans themselves. Branches
# return plain columns, and each entry's `data` is built in Python from the rows that survive the
# outer LIMIT, so the database builds no JSON for rows it then drops.
#
# The customer asked for resolves to the profile it was merged into, and the cluster is that
# profile and those merged into it: one hop each, as merging keeps `merged_into` pointing at the
# final survivor, so both are index lookups.
_CLUSTER = (
    "WITH live AS ("
    "SELECT COALESCE(c.merged_into_id, c.id) AS id FROM profiles_customer c WHERE c.id = %(customer)s), "
    "cluster AS (SELECT id FROM live UNION ALL "
    "SELECT c.id FROM profiles_customer c WHERE c.merged_into_id = (SELECT id FROM live)) "
)
_COLUMNS = "kind, at, num, uid, channel, s1, s2, s3, s4, s5, s6, u1, u2, n1, b1, j1, t1, t2, t3"
_SQL_BRANCHES: dict[str, tuple[str, str, str]] = {
    # kind: (SELECT <_COLUMNS> ... WHERE <the customer>, its time column, its key column)
    EVENT: (
        "SELECT 'event', e.timestamp, e.id, NULL::uuid, e.channel, e.type, e.name, e.message_id, NULL, NULL, "
        "NULL, e.source_id, NULL::uuid, NULL::bigint, NULL::boolean, e.properties, NULL::timestamptz, "
        "NULL::timestamptz, NULL::timestamptz "
        "FROM profiles_event e WHERE e.customer_id = (SELECT id FROM live)",
        "e.timestamp",
        "e.id",
    ),
    CONSENT_CHANGE: (
        "SELECT 'consent_change', k.changed_at, k.id, NULL::uuid, '', k.purpose, k.channel, k.status, "
        "k.origin, k.source_label, k.actor, k.source_id, NULL::uuid, k.event_id, k.applied, NULL::jsonb, "
        "NULL::timestamptz, NULL::timestamptz, NULL::timestamptz "
        "FROM profiles_consentchange k WHERE k.customer_id IN (SELECT id FROM cluster)",
        "k.changed_at",
        "k.id",
    ),
    MERGE: (
        "SELECT 'merge', m.created_at, m.id, NULL::uuid, '', m.reason, m.actor, NULL, NULL, NULL, NULL, "
        "m.survivor_id, m.merged_id, NULL::bigint, NULL::boolean, NULL::jsonb, NULL::timestamptz, "
        "NULL::timestamptz, NULL::timestamptz "
        "FROM profiles_mergerecord m WHERE m.survivor_id IN (SELECT id FROM cluster)",
        "m.created_at",
        "m.id",
    ),
    UNMERGE: (
        "SELECT 'unmerge', m.undone_at, m.id, NULL::uuid, '', m.reason, m.undone_by, NULL, NULL, NULL, NULL, "
        "m.survivor_id, m.merged_id, NULL::bigint, NULL::boolean, NULL::jsonb, NULL::timestamptz, "
        "NULL::timestamptz, NULL::timestamptz "
        "FROM profiles_mergerecord m WHERE m.survivor_id IN (SELECT id FROM cluster) AND m.undone_at IS NOT NULL",
        "m.undone_at",
        "m.id",
    ),
}


def _sql_keyset(kind: str, at: str, key: str, before: Position | None) -> str:
    """Rows strictly after the cursor in (at, kind, key) descending order. The redundant
    `at <= cursor` bound is what lets the index range scan start at the cursor."""
    if before is None:
        return ""
    if kind < before[1]:
        return f" AND {at} <= %(at)s"
    if kind > before[1]:
        return f" AND {at} < %(at)s"
    param = "%(num)s" if kind in _NUMERIC_KINDS else "%(uid)s"
    return f" AND {at} <= %(at)s AND ({at} < %(at)s OR {key} < {param})"


def _sql_data(kind: str, row: tuple[Any, ...]) -> dict[str, Any]:
    """An entry's `data` from the plain columns its branch selected (see _SQL_BRANCHES)."""
    s1, s2, s3, s4, s5, s6, u1, u2, n1, b1, j1, *_ = row
    if kind == EVENT:
        # Django has psycopg hand jsonb over as text (JSONField decodes it); so do we.
        properties = orjson.loads(j1) if isinstance(j1, str) else j1
        return {
            "type": s1,
            "name": s2,
            "source_id": u1,
            "message_id": s3,
            "properties": properties,
        }
    if kind == CONSENT_CHANGE:
        return {
            "purpose": s1,
            "channel": s2,
            "status": s3,
            "origin": s4,
            "source_id": u1,
            "source_label": s5,
            "actor": s6,
            "event_id": n1,
            "applied": b1,
        }
    return {"survivor_id": u1, "merged_id": u2, "reason": s1, "actor": s2}


def _built_in_sql(
    customer_id: UUID, before: Position | None, limit: int, kinds: list[str]
) -> tuple[UUID | None, list[UUID], list[TimelineEntry]]:
    """The live customer's id (None if there is no such customer), its cluster (the live id
    first) and its entries, in one statement: the customer and the profiles merged into it are
    resolved in the statement too, saving the round trips registered sources would need."""
    branches = []
    for kind in kinds:
        select, at, key = _SQL_BRANCHES[kind]
        where = _sql_keyset(kind, at, key, before)
        branches.append(f"({select}{where} ORDER BY {at} DESC, {key} DESC LIMIT %(limit)s)")
    live = (
        "SELECT 'customer', NULL::timestamptz, NULL::bigint, c.id, "
        "CASE WHEN c.id = (SELECT id FROM live) THEN 'live' ELSE '' END, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL::uuid, NULL::uuid, NULL::bigint, NULL::boolean, NULL::jsonb, NULL::timestamptz, NULL::timestamptz, "
        "NULL::timestamptz FROM cluster c"
    )
    # Only this module's constant fragments are joined here; every value is a bound parameter.
    page = ""
    if branches:
        page = (
            " UNION ALL (SELECT * FROM ("  # noqa: S608
            + " UNION ALL ".join(branches)
            + f") AS t({_COLUMNS}) "
            "ORDER BY at DESC, kind DESC, num DESC NULLS LAST, uid DESC NULLS LAST LIMIT %(limit)s)"
        )
    sql = _CLUSTER + live + page
    params: dict[str, Any] = {"customer": customer_id, "limit": limit}
    if before is not None:
        params["at"] = before[0]
        params["num"] = int(before[2]) if before[1] in _NUMERIC_KINDS else None
        params["uid"] = UUID(hex=before[2]) if before[1] in _UUID_KINDS else None
    live_id = None
    merged: list[UUID] = []
    entries = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for kind, at, num, uid, channel, *columns in cursor.fetchall():
            if kind == "customer":
                if channel == "live":
                    live_id = uid
                else:
                    merged.append(uid)
                continue
            entries.append(
                TimelineEntry(
                    at=at,
                    kind=kind,
                    key=_numeric_key(num) if num is not None else uid.hex,
                    id=str(num) if num is not None else str(uid),
                    channel=channel,
                    data=_sql_data(kind, tuple(columns)),
                )
            )
    return live_id, [live_id, *sorted(merged)] if live_id else [], entries


def customer_timeline(
    *,
    customer_id: UUID,
    before: Position | None = None,
    limit: int = 50,
    kinds: set[str] | None = None,
) -> TimelinePage | None:
    """One page of a customer's timeline (the profile it was merged into, with every profile
    merged into that), newest first, and the position to continue from (None on the last page);
    None when there is no such customer. The customer and the built-in kinds are one statement;
    each registered source (sessions, deliveries, ...) is one query more."""
    wanted = [kind for kind in BUILT_IN_KINDS if kinds is None or kind in kinds]
    registered = [(k, s) for k, s in contracts.timeline_sources() if kinds is None or k & kinds]
    live_id, cluster, entries = _built_in_sql(customer_id, before, limit + 1, wanted)
    if live_id is None:
        return None
    if registered:
        query = TimelineQuery(
            customer_id=live_id,
            customer_ids=tuple(cluster),
            before=before,
            limit=limit + 1,
        )
        for _, source in registered:
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
