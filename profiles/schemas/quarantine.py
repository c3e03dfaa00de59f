"""Replaying quarantined messages once whatever rejected them has been fixed."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from profiles.contracts import SourceInfo
from profiles.identifiers import normalize_id
from profiles.ingest import event_ingest
from profiles.models import EventKey, QuarantinedMessage, Source
from profiles.schemas.selectors import quarantine_list
from profiles.schemas.validation import SCHEMA_REASON, SCHEMA_STAGE

MAX_REPLAY = 1000


class Outcome:
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    id: int
    outcome: str
    reason: str = ""
    detail: str = ""
    event_id: int | None = None


@dataclass(slots=True)
class ReplayReport:
    results: list[ReplayResult] = field(default_factory=list)
    last_id: int | None = None
    more: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)


@transaction.atomic
def quarantine_replay(
    *,
    ids: list[int] | None = None,
    source_id: UUID | None = None,
    reason: str | None = None,
    stage: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> ReplayReport:
    """Submit open quarantined messages to `event_ingest` again, as received: same source,
    messageId and receipt time, so dedup holds and timestamps come out as they first would
    have. One accepted (or found already stored) is resolved and linked to its event; one
    rejected again stays open with its new stage, reason and detail. Rows another replay holds
    are left alone (skipped), so two replays never submit a message twice."""
    limit = max(1, min(limit, MAX_REPLAY))
    rows_query = quarantine_list(source_id=source_id, reason=reason, stage=stage, status="open")
    if ids is not None:
        ids = list(dict.fromkeys(ids))[:MAX_REPLAY]
        limit = max(1, len(ids))  # `limit` pages a replay by filter; given ids are all taken
        rows_query = rows_query.filter(id__in=ids)
    if after_id is not None:
        rows_query = rows_query.filter(id__gt=after_id)
    rows = list(rows_query.order_by("id").select_for_update(skip_locked=True)[: limit + 1])
    report = ReplayReport(more=len(rows) > limit)
    rows = rows[:limit]
    report.last_id = rows[-1].id if rows else None
    now = timezone.now()
    outcomes: dict[int, ReplayResult] = {}
    if ids is not None:
        held = {row.id for row in rows}
        outcomes |= {
            i: ReplayResult(id=i, outcome=Outcome.SKIPPED, reason="not_open")
            for i in dict.fromkeys(ids)
            if i not in held
        }
    sources = {source.id: source for source in Source.objects.filter(id__in={r.source_id for r in rows})}
    batches: dict[tuple[Any, ...], list[tuple[QuarantinedMessage, dict[str, Any]]]] = defaultdict(list)
    first_of_message: dict[tuple[UUID, str], QuarantinedMessage] = {}
    followers: dict[int, list[QuarantinedMessage]] = defaultdict(list)
    for row in rows:
        skip = _unreplayable(row, sources)
        if skip:
            outcomes[row.id] = ReplayResult(id=row.id, outcome=Outcome.SKIPPED, reason=skip)
            continue
        assert row.source_id is not None and isinstance(row.raw, dict)
        raw = dict(row.raw)
        if raw.get("messageId") is None:
            # It never had one, so parsing would make up a new one each time: give it a stable one.
            raw["messageId"] = f"quarantine-{row.id}"
        message_key = (row.source_id, orjson.dumps(raw["messageId"]).decode())
        if message_key in first_of_message:
            followers[first_of_message[message_key].id].append(row)
            continue
        first_of_message[message_key] = row
        batch_key = (row.source_id, row.received_at, row.call_type, orjson.dumps(row.defaults).decode())
        batches[batch_key].append((row, raw))

    for (source_id_, received_at, call_type, _), members in batches.items():
        outcomes |= _replay_batch(sources[source_id_], members, received_at, call_type, now)
    for leader_id, rows_alike in followers.items():
        leader = next(row for row in rows if row.id == leader_id)
        for row in rows_alike:
            _apply(row, outcomes[leader_id], leader, now)
            outcomes[row.id] = ReplayResult(
                id=row.id,
                outcome=outcomes[leader_id].outcome,
                reason=row.reason,
                detail=row.detail,
                event_id=row.event_id,
            )
    replayed = [row for row in rows if outcomes[row.id].outcome != Outcome.SKIPPED]
    QuarantinedMessage.objects.bulk_update(
        replayed, ["stage", "reason", "detail", "replay_count", "replayed_at", "resolved_at", "event"]
    )
    order = {i: n for n, i in enumerate(ids)} if ids is not None else {}
    report.results = sorted(outcomes.values(), key=lambda r: order.get(r.id, r.id))
    return report


def _unreplayable(row: QuarantinedMessage, sources: dict[UUID, Source]) -> str:
    source = sources.get(row.source_id) if row.source_id else None
    if source is None:
        return "source_deleted"
    if not source.enabled:
        return "source_disabled"
    if not isinstance(row.raw, dict):
        return "not_a_json_object"
    return ""


def _quarantine_message_id(raw: dict[str, Any]) -> str:
    """The message_id ingestion gives the quarantine row it writes for `raw`."""
    message_id = raw.get("messageId")
    return message_id[:200] if isinstance(message_id, str) else ""


def _replay_batch(
    source: Source,
    members: list[tuple[QuarantinedMessage, dict[str, Any]]],
    received_at: datetime,
    call_type: str,
    now: datetime,
) -> dict[int, ReplayResult]:
    info = SourceInfo(
        id=source.id,
        name=source.name,
        channel=source.channel,
        enabled=source.enabled,
        identity_kinds=frozenset(source.identity_kinds or ()),
    )
    raws = [raw for _, raw in members]
    before = QuarantinedMessage.objects.aggregate(last=Max("id"))["last"] or 0
    leader = members[0][0]
    result = event_ingest(
        source=info, raw_messages=raws, call_type=call_type or None, received_at=received_at, defaults=leader.defaults
    )
    # Ingestion kept what it rejected again in new rows: fold them into the rows replayed. Only
    # rows with this source, messageId and content qualify, so a row another request wrote in
    # the meantime is never taken for one of these.
    message_ids = {_quarantine_message_id(raw) for raw in raws} - {""}
    fresh = {
        row.message_id: row
        for row in QuarantinedMessage.objects.filter(id__gt=before, source_id=source.id, message_id__in=message_ids)
        if any(row.raw == raw for raw in raws)
    }
    QuarantinedMessage.objects.filter(id__in=[row.id for row in fresh.values()]).delete()
    rejected = {rejection.index: rejection for rejection in result.rejected}
    stored_ids = [i for i in (normalize_id(raw["messageId"]) for raw in raws) if i]
    # The dedup keys say which event each messageId is (events themselves have no index on it).
    events = dict(
        EventKey.objects.filter(source_id=source.id, message_id__in=stored_ids).values_list("message_id", "event_id")
    )
    outcomes = {}
    for index, (row, raw) in enumerate(members):
        row.replay_count += 1
        row.replayed_at = now
        rejection = rejected.get(index)
        if rejection is not None:
            new_row = fresh.get(_quarantine_message_id(raw))
            row.stage = new_row.stage if new_row else (SCHEMA_STAGE if rejection.code == SCHEMA_REASON else "ingest")
            row.reason = rejection.code
            row.detail = rejection.detail
            outcomes[row.id] = ReplayResult(
                id=row.id, outcome=Outcome.QUARANTINED, reason=row.reason, detail=row.detail
            )
            continue
        event_id = events.get(normalize_id(raw["messageId"]) or "")
        if event_id is None:
            # Not rejected yet not stored: nothing ingestion does today, but never lose it.
            outcomes[row.id] = ReplayResult(id=row.id, outcome=Outcome.QUARANTINED, reason=row.reason)
            continue
        row.resolved_at = now
        row.event_id = event_id
        outcomes[row.id] = ReplayResult(id=row.id, outcome=Outcome.ACCEPTED, event_id=event_id)
    return outcomes


def _apply(row: QuarantinedMessage, outcome: ReplayResult, leader: QuarantinedMessage, now: datetime) -> None:
    """A row holding the same message as one just replayed shares its outcome."""
    row.replay_count += 1
    row.replayed_at = now
    if outcome.outcome == Outcome.ACCEPTED:
        row.resolved_at = now
        row.event_id = outcome.event_id
    else:
        row.stage, row.reason, row.detail = leader.stage, leader.reason, leader.detail
