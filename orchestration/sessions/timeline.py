"""Sessions on the customer timeline (profiles.contracts.on_timeline): a session starting and a
session ending are entries of their own, over the customer's live profile and every profile
merged into it (a session stays on the profile it began on).

Each kind is read newest first from the cursor's position with `limit` rows, as profiles reads its
own sources; a customer has few sessions, so the (customer, last_seen_at) index finds them and the
sort is of a handful of rows.
"""

from typing import Any

from django.db.models import Q, QuerySet

from orchestration.sessions.models import SessionRecord
from profiles.contracts import TimelineEntry, TimelineQuery

SESSION_STARTED = "session_started"
SESSION_ENDED = "session_ended"
KINDS = frozenset({SESSION_STARTED, SESSION_ENDED})
_AT = {SESSION_STARTED: "started_at", SESSION_ENDED: "ended_at"}


def _after_cursor(queryset: QuerySet[SessionRecord], query: TimelineQuery, kind: str) -> QuerySet[SessionRecord]:
    """Rows strictly after the cursor in the timeline's (at, kind, key) descending order."""
    if query.before is None:
        return queryset
    at = _AT[kind]
    cursor_at, cursor_kind, cursor_key = query.before
    if kind < cursor_kind:
        return queryset.filter(**{f"{at}__lte": cursor_at})
    if kind > cursor_kind:
        return queryset.filter(**{f"{at}__lt": cursor_at})
    return queryset.filter(Q(**{f"{at}__lt": cursor_at}) | Q(**{at: cursor_at, "id__lt": cursor_key}))


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


def sessions_timeline(query: TimelineQuery) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    for kind in sorted(KINDS):
        at = _AT[kind]
        records = SessionRecord.objects.filter(customer_id__in=query.customer_ids).defer("state")
        if kind == SESSION_ENDED:
            records = records.exclude(ended_at=None)
        records = _after_cursor(records, query, kind).order_by(f"-{at}", "-id")[: query.limit]
        entries.extend(_entry(record, kind) for record in records)
    return entries
