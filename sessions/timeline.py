"""Sessions on the customer timeline (profiles.contracts.on_timeline): a session starting and a
session ending are entries of their own, over the customer's live profile and every profile
merged into it (a session stays on the profile it began on).

Each kind is read newest first from the cursor's position with `limit` rows, as profiles reads its
own sources; a customer has few sessions, so the (customer, last_seen_at) index finds them and the
sort is of a handful of rows.
"""

from typing import Any
from uuid import UUID

import orjson
from django.db import connection

from profiles.contracts import TimelineEntry, TimelineQuery
from sessions.models import SessionRecord

SESSION_STARTED = "session_started"
SESSION_ENDED = "session_ended"
KINDS = frozenset({SESSION_STARTED, SESSION_ENDED})
_AT = {SESSION_STARTED: "started_at", SESSION_ENDED: "ended_at"}


def _entry(record: SessionRecord, kind: str) -> TimelineEntry:
    data: dict[str, Any] = {
        "device": record.device,
        "started_at": record.started_at,
        "last_seen_at": record.last_seen_at,
        "ended_at": record.ended_at,
        "started_channel": record.started_channel,
        "channels": list(record.channels),
        "origin": record.origin,
    }
    if kind == SESSION_ENDED:
        data.update(end_reason=record.end_reason, outcome=record.outcome or None, ended_channel=record.ended_channel)
    return TimelineEntry(
        at=getattr(record, _AT[kind]),
        kind=kind,
        key=record.id.hex,
        id=str(record.id),
        channel=record.ended_channel if kind == SESSION_ENDED and record.ended_channel else record.channel,
        data=data,
    )


def _sql_after_cursor(kind: str, query: TimelineQuery) -> str:
    """Rows strictly after the cursor in the timeline's (at, kind, key) descending order."""
    if query.before is None:
        return ""
    at = f"s.{_AT[kind]}"
    if kind < query.before[1]:
        return f" AND {at} <= %(at)s"
    if kind > query.before[1]:
        return f" AND {at} < %(at)s"
    return f" AND ({at} < %(at)s OR ({at} = %(at)s AND s.id < %(key)s::uuid))"


_COLUMNS = (
    "s.id, s.channel, s.device, s.started_at, s.last_seen_at, s.ended_at, s.started_channel, s.channels, "
    "s.origin, s.end_reason, s.outcome, s.ended_channel"
)


def sessions_timeline(query: TimelineQuery) -> list[TimelineEntry]:
    """Both kinds in one statement (one round trip for the page)."""
    branches = []
    for kind in sorted(KINDS):
        at = _AT[kind]
        ended = " AND s.ended_at IS NOT NULL" if kind == SESSION_ENDED else ""
        branches.append(
            f"(SELECT '{kind}' AS kind, {_COLUMNS} FROM orchestration_session s "  # noqa: S608 - constants only
            f"WHERE s.customer_id = ANY(%(customers)s){ended}{_sql_after_cursor(kind, query)} "
            f"ORDER BY s.{at} DESC, s.id DESC LIMIT %(limit)s)"
        )
    params: dict[str, Any] = {"customers": list(query.customer_ids), "limit": query.limit}
    if query.before is not None:
        params["at"] = query.before[0]
        # The key is compared only when the cursor stopped on a session entry (a UUID's hex).
        params["key"] = UUID(hex=query.before[2]) if query.before[1] in KINDS else None
    entries = []
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(branches), params)
        for kind, *row in cursor.fetchall():
            record = SessionRecord(
                id=row[0],
                channel=row[1],
                device=row[2],
                started_at=row[3],
                last_seen_at=row[4],
                ended_at=row[5],
                started_channel=row[6],
                channels=orjson.loads(row[7]) if isinstance(row[7], str | bytes) else row[7],
                origin=row[8],
                end_reason=row[9],
                outcome=row[10],
                ended_channel=row[11],
            )
            entries.append(_entry(record, kind))
    return entries
