"""Writes on sessions. Each is atomic and emits its lifecycle event (Session Started, Ended,
Resumed) through ingestion in the same transaction, so journeys see exactly what happened."""

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from config.core import metrics
from config.core.errors import BadRequest, Conflict, Gone, NotFound, PayloadTooLarge, PreconditionFailed
from config.core.secrets import digest, new_secret
from profiles.contracts import SourceInfo, StoredEvent
from profiles.facade import customer_find, event_ingest, events_who, identity_normalize, sources_system
from sessions.concurrency import ANY, Expected, VersionMismatch
from sessions.documents import EndReason, SessionDoc, state_size
from sessions.merge_patch import PatchError, json_depth, merge_patch
from sessions.models import ContinuationKind, ResumeToken, SessionContinuation, SessionRecord
from sessions.selectors import (
    LIFECYCLE_EVENTS,
    customer_cluster,
    customer_clusters,
    source_identity_customer,
    source_info,
    source_may_access,
)
from sessions.store import SessionNotFound, inactivity_timeout, session_store, to_doc

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 128


# --- helpers ----------------------------------------------------------------------------------


def _lock(*keys: str) -> None:
    """Serialise writers of the same identity or customer channel until commit (PostgreSQL
    advisory locks, taken in sorted order so two writers never deadlock)."""
    if not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(%s::text[]) AS k",
            [sorted(set(keys))],
        )


def _channel_key(customer_id: object, channel: str) -> str:
    return f"session-channel:{customer_id}:{channel}"


def state_check(state: object) -> dict[str, Any]:
    """A session state is a JSON object within the depth and size limits."""
    if not isinstance(state, dict):
        raise BadRequest("state must be a JSON object", code="invalid_state")
    try:
        json_depth(state)
    except PatchError as error:
        raise BadRequest(str(error), code="invalid_state") from None
    limit = settings.SESSIONS_MAX_STATE_BYTES
    size = state_size(state)
    if size > limit:
        raise PayloadTooLarge(
            f"session state would be {size} bytes; the limit is {limit}",
            code="state_too_large",
            extra={"limit": limit, "size": size},
        )
    return state


def _identity(kind: str, value: object, name: str) -> str:
    if value is None or value == "":
        return ""
    normalized = identity_normalize(kind=kind, value=value)
    if normalized is None:
        raise BadRequest(f"{name} must be a non-empty string of at most 512 characters", code="invalid_identity")
    return normalized


def _emit(source: SourceInfo | None, name: str, items: list[tuple[SessionDoc, dict[str, Any]]], now: datetime) -> None:
    """Lifecycle events through ingestion; the message id makes a retried write emit once."""
    if source is None or not items:
        return
    slug = name.lower().replace(" ", "-")
    messages: list[dict[str, Any]] = []
    for doc, properties in items:
        message: dict[str, Any] = {
            "type": "track",
            "event": name,
            "messageId": f"{slug}:{doc.id}:{doc.version}",
            "properties": {"sessionId": doc.id, **properties},
        }
        if doc.user_id:
            message["userId"] = doc.user_id
        if doc.anonymous_id:
            message["anonymousId"] = doc.anonymous_id
        messages.append(message)
    result = event_ingest(source=source, raw_messages=messages, call_type="track", received_at=now)
    for rejection in result.rejected:
        logger.warning("%s event for session was rejected: %s", name, rejection.detail)


def _emitter(doc: SessionDoc, source: SourceInfo | None) -> SourceInfo | None:
    if source is not None:
        return source
    return source_info(source_id=doc.source_ids[-1]) if doc.source_ids else None


def _guard(source: SourceInfo) -> Callable[[SessionDoc], None]:
    def check(doc: SessionDoc) -> None:
        if not source_may_access(source=source, doc=doc):
            raise NotFound("no such session", code="session_not_found")

    return check


def _record_started_over(
    docs: list[SessionDoc], now: datetime, clusters: dict[UUID, tuple[UUID, list[UUID]]] | None = None
) -> None:
    """A new session while the customer was recently on another channel: a continuation that
    started over instead of resuming (the denominator of context retention). `clusters`: the
    docs' customers' clusters when the caller has them already."""
    if not docs:
        return
    window = now - timedelta(seconds=settings.SESSIONS_CONTINUATION_WINDOW_SECONDS)
    new_ids = [d.id for d in docs]
    if clusters is None:
        clusters = customer_clusters(customer_ids={d.customer_id for d in docs})
    live_of = {member: live for live, members in clusters.values() for member in members}
    recent: dict[UUID, SessionRecord] = {}
    for record in (
        SessionRecord.objects.filter(customer_id__in=list(live_of), last_seen_at__gte=window)
        .exclude(id__in=new_ids)
        .order_by("last_seen_at")
    ):
        recent[live_of[record.customer_id]] = record
    rows = []
    for doc in docs:
        previous = recent.get(clusters[UUID(doc.customer_id)][0])
        if previous is not None and previous.channel != doc.channel:
            rows.append(
                SessionContinuation(
                    customer_id=doc.customer_id,
                    kind=ContinuationKind.STARTED_OVER,
                    from_session_id=previous.id,
                    to_session_id=doc.id,
                    from_channel=previous.channel,
                    to_channel=doc.channel,
                    created_at=now,
                )
            )
    SessionContinuation.objects.bulk_create(rows)


# --- start, patch, end --------------------------------------------------------------------


def session_start(
    *,
    source: SourceInfo,
    user_id: object,
    anonymous_id: object,
    device: str,
    state: object,
    now: datetime,
) -> tuple[SessionDoc, bool]:
    """Start a session on the source's channel, or return the customer's active one there
    (created=False). Emits Session Started for a new one."""
    user = _identity("user_id", user_id, "userId")
    anonymous = _identity("anonymous_id", anonymous_id, "anonymousId")
    if not user and not anonymous:
        raise BadRequest("userId or anonymousId is required", code="missing_identity")
    initial = state_check({} if state is None else state)
    identities = [(k, v) for k, v in (("user_id", user), ("anonymous_id", anonymous)) if v]
    with transaction.atomic():
        _lock(*[f"session-identity:{k}:{v}" for k, v in identities])
        customer = next((c for c in (customer_find(kind=k, value=v) for k, v in identities) if c is not None), None)
        if customer is not None:
            _lock(_channel_key(customer.id, source.channel))
            existing = (
                SessionRecord.objects.filter(customer_id__in=customer.member_ids, channel=source.channel, ended_at=None)
                .order_by("-last_seen_at")
                .first()
            )
            if existing is not None and source_may_access(source=source, doc=to_doc(existing)):
                return to_doc(existing), False
        doc = SessionDoc(
            id=str(uuid.uuid4()),
            customer_id="",
            channel=source.channel,
            started_channel=source.channel,
            device=device,
            version=1,
            state=initial,
            started_at=now,
            last_seen_at=now,
            channels=(source.channel,),
            source_ids=(str(source.id),),
            user_id=user,
            anonymous_id=anonymous,
        )
        result = event_ingest(
            source=source,
            raw_messages=[_started_message(doc, device)],
            call_type="track",
            received_at=now,
        )
        if result.rejected:
            raise BadRequest(result.rejected[0].detail, code=result.rejected[0].code)
        customer_id = events_who(event_ids=result.event_ids[:1])[result.event_ids[0]].customer_id
        created = session_store().create(doc.evolve(customer_id=str(customer_id)))
        _record_started_over([created], now)
    return created, True


def _started_message(doc: SessionDoc, device: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": "Session Started",
        "messageId": f"session-started:{doc.id}:1",
        "properties": {"sessionId": doc.id, "channel": doc.channel, "device": device},
    }
    if doc.user_id:
        message["userId"] = doc.user_id
    if doc.anonymous_id:
        message["anonymousId"] = doc.anonymous_id
    return message


def session_patch(
    *,
    source: SourceInfo,
    session_id: str,
    patch: object,
    expected: Expected,
    now: datetime,
) -> SessionDoc:
    """Apply a JSON Merge Patch to the session's state if `expected` is still its version."""
    if not isinstance(patch, dict):
        raise BadRequest("a merge patch of a session's state must be a JSON object", code="invalid_patch")
    try:
        json_depth(patch)
    except PatchError as error:
        raise BadRequest(str(error), code="invalid_patch") from None

    def mutate(doc: SessionDoc) -> SessionDoc:
        if not doc.active:
            raise Conflict("this session has ended", code="session_ended")
        return doc.evolve(state=state_check(merge_patch(doc.state, patch)), last_seen_at=now)

    return _update(session_id, mutate, expected=expected, source=source)


def _update(
    session_id: str,
    mutate: Any,
    *,
    expected: Expected,
    source: SourceInfo | None,
) -> SessionDoc:
    try:
        doc = session_store().update(
            session_id, mutate, expected=expected, guard=_guard(source) if source is not None else None
        )
    except SessionNotFound:
        raise NotFound("no such session", code="session_not_found") from None
    except VersionMismatch as mismatch:
        metrics.SESSION_OPERATIONS.labels(operation="conflict").inc()
        raise PreconditionFailed(
            f"the session is at version {mismatch.current}, not {mismatch.expected}: read it again and retry",
            code="version_mismatch",
            extra={"currentVersion": mismatch.current},
        ) from None
    metrics.SESSION_OPERATIONS.labels(operation="write").inc()
    return doc


def session_end(
    *,
    session_id: str,
    source: SourceInfo | None,
    outcome: str,
    now: datetime,
    expected: Expected = ANY,
    reason: str = EndReason.ENDED,
) -> SessionDoc:
    """End a session (a repeat is a no-op) and emit Session Ended. `source` None: staff."""

    def mutate(doc: SessionDoc) -> SessionDoc | None:
        if not doc.active:
            return None
        return doc.evolve(
            ended_at=now,
            end_reason=reason,
            outcome=outcome,
            ended_channel=source.channel if source else doc.channel,
            last_seen_at=now,
        )

    with transaction.atomic():
        doc = _update(session_id, mutate, expected=expected, source=source)
        if doc.ended_at == now:
            _emit(_emitter(doc, source), "Session Ended", [(doc, _ended_properties(doc))], now)
    return doc


def _ended_properties(doc: SessionDoc) -> dict[str, Any]:
    return {"reason": doc.end_reason, "outcome": doc.outcome or None, "channel": doc.ended_channel}


# --- handoff and resume -------------------------------------------------------------------


def session_handoff(
    *, source: SourceInfo, session_id: str, ttl_seconds: int | None, now: datetime
) -> tuple[str, ResumeToken]:
    """Issue a single-use resume token for the session; returns the token, shown only now."""
    from sessions.selectors import session_for_source

    ttl = settings.SESSIONS_TOKEN_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    if not 1 <= ttl <= settings.SESSIONS_TOKEN_MAX_TTL_SECONDS:
        raise BadRequest(
            f"ttlSeconds must be between 1 and {settings.SESSIONS_TOKEN_MAX_TTL_SECONDS}", code="invalid_ttl"
        )
    doc = session_for_source(source=source, session_id=session_id)
    if not doc.active:
        raise Conflict("this session has ended", code="session_ended")
    secret = new_secret("tlr")
    token = ResumeToken.objects.create(
        session_id=doc.id,
        token_hash=digest(secret),
        prefix=secret[:8],
        issued_by_id=source.id,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    metrics.SESSION_OPERATIONS.labels(operation="handoff").inc()
    return secret, token


def session_resume_by_token(*, source: SourceInfo, token: object, device: str, now: datetime) -> SessionDoc:
    """Redeem a resume token (once) and move its session to the caller's channel."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise BadRequest("token must be the string a handoff returned", code="invalid_token")
    with transaction.atomic():
        row = ResumeToken.objects.select_for_update().filter(token_hash=digest(token)).first()
        if row is None:
            raise NotFound("unknown resume token", code="token_not_found")
        if row.revoked_at is not None:
            raise Gone("this resume token was revoked", code="token_revoked")
        if row.used_at is not None:
            raise Gone("this resume token has already been used", code="token_used")
        if row.expires_at <= now:
            raise Gone("this resume token has expired", code="token_expired")
        row.used_at = now
        row.used_by_id = source.id
        row.save(update_fields=["used_at", "used_by"])
        return _link(source=source, session_id=str(row.session_id), device=device, via="token", now=now)


def session_resume_by_identity(
    *, source: SourceInfo, kind: str, value: object, session_id: str | None, device: str, now: datetime
) -> SessionDoc:
    """Move the customer's most recent resumable session on another channel (or `session_id`)
    to the caller's channel, if the caller has itself identified the customer by this identity."""
    normalized = _identity(kind, value, kind)
    customer_id = source_identity_customer(source_id=source.id, kind=kind, value=normalized) if normalized else None
    if customer_id is None:
        raise NotFound("no resumable session for this identity", code="session_not_found")
    window = now - timedelta(seconds=settings.SESSIONS_RESUME_WINDOW_SECONDS)
    candidates = SessionRecord.objects.filter(customer_id__in=customer_cluster(customer_id=customer_id)).filter(
        Q(ended_at=None) | Q(end_reason=EndReason.INACTIVE, ended_at__gte=window)
    )
    if session_id is not None:
        candidates = candidates.filter(id=session_id)
    else:
        candidates = candidates.exclude(channel=source.channel)
    found = candidates.order_by("-last_seen_at").values_list("id", flat=True).first()
    if found is None:
        raise NotFound("no resumable session for this identity", code="session_not_found")
    with transaction.atomic():
        return _link(source=source, session_id=str(found), device=device, via="identity", now=now)


def _resumable(doc: SessionDoc, now: datetime) -> bool:
    if doc.active:
        return True
    window = timedelta(seconds=settings.SESSIONS_RESUME_WINDOW_SECONDS)
    return doc.end_reason == EndReason.INACTIVE and doc.ended_at is not None and doc.ended_at >= now - window


def _link(*, source: SourceInfo, session_id: str, device: str, via: str, now: datetime) -> SessionDoc:
    """Move a session to `source`'s channel and device (reopening it if it had only timed out),
    end whatever else was active for the customer on that channel, record the continuation and
    emit Session Resumed. Runs in the caller's transaction."""
    owner = SessionRecord.objects.filter(id=session_id).values_list("customer_id", flat=True).first()
    if owner is None:
        raise NotFound("no such session", code="session_not_found")
    # The session may belong to a profile merged away since: the customer is the live one.
    customer_id, cluster = customer_clusters(customer_ids=[owner])[owner]
    _lock(_channel_key(customer_id, source.channel))
    previous: dict[str, str] = {}

    def mutate(doc: SessionDoc) -> SessionDoc:
        if not _resumable(doc, now):
            raise Gone("this session has ended", code="session_ended")
        previous["channel"] = doc.channel
        channels = doc.channels if doc.channels[-1:] == (source.channel,) else (*doc.channels, source.channel)
        sources = doc.source_ids if doc.linked_to(source.id) else (*doc.source_ids, str(source.id))
        return doc.evolve(
            channel=source.channel,
            device=device,
            channels=channels,
            source_ids=sources,
            last_seen_at=now,
            ended_at=None,
            end_reason="",
            outcome="",
            ended_channel="",
        )

    doc = _update(session_id, mutate, expected=ANY, source=None)
    others = SessionRecord.objects.filter(customer_id__in=cluster, channel=source.channel, ended_at=None).exclude(
        id=doc.id
    )
    for other_id in others.values_list("id", flat=True):
        session_end(session_id=str(other_id), source=None, outcome="", now=now, reason=EndReason.SUPERSEDED)
    SessionContinuation.objects.create(
        customer_id=customer_id,
        kind=ContinuationKind.RESUMED,
        from_session_id=doc.id,
        to_session_id=doc.id,
        from_channel=previous["channel"],
        to_channel=source.channel,
        via=via,
        created_at=now,
    )
    _emit(
        source,
        "Session Resumed",
        [(doc, {"fromChannel": previous["channel"], "toChannel": source.channel, "via": via, "device": device})],
        now,
    )
    metrics.SESSION_OPERATIONS.labels(operation="resume").inc()
    return doc


# --- staff --------------------------------------------------------------------------------


def session_tokens_revoke(*, session_id: str, now: datetime) -> int:
    """Revoke every outstanding resume token of a session; returns how many."""
    return ResumeToken.objects.filter(session_id=uuid.UUID(session_id), used_at=None, revoked_at=None).update(
        revoked_at=now
    )


def resume_token_revoke(*, token_id: uuid.UUID, now: datetime) -> ResumeToken:
    with transaction.atomic():
        token = ResumeToken.objects.select_for_update().filter(id=token_id).first()
        if token is None:
            raise NotFound("no such resume token", code="token_not_found")
        if token.revoked_at is None and token.used_at is None:
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
    return token


# --- sessions from events -----------------------------------------------------------------


def sessions_from_events(events: list[StoredEvent]) -> None:
    """Routing handler: a customer's event on a channel with no active session there starts
    one (Session Started); an event on an active session's channel keeps it alive. A customer
    is its live profile with every profile merged into it, so a session begun on a profile that
    was merged away is the one kept alive, and a new session starts on the survivor. Runs in the
    routing transaction, a fixed number of queries per batch whatever its size."""
    system = sources_system(source_ids={e.source_id for e in events})
    wanted = [e for e in events if e.source_id not in system and not (e.type == "track" and e.name in LIFECYCLE_EVENTS)]
    if not wanted:
        return
    clusters = customer_clusters(customer_ids={e.customer_id for e in wanted})
    latest: dict[tuple[str, str], StoredEvent] = {}
    for event in wanted:
        pair = (str(clusters[event.customer_id][0]), event.channel)
        if pair not in latest or event.received_at > latest[pair].received_at:
            latest[pair] = event
    _lock(*[_channel_key(customer, channel) for customer, channel in latest])
    live_of = {member: live for live, members in clusters.values() for member in members}
    active: dict[tuple[str, str], str] = {}
    for row_id, row_customer, row_channel in (
        SessionRecord.objects.filter(
            ended_at=None,
            customer_id__in=list(live_of),
            channel__in={ch for _, ch in latest},
        )
        .order_by("last_seen_at")
        .values_list("id", "customer_id", "channel")
    ):
        active[(str(live_of[row_customer]), row_channel)] = str(row_id)
    store = session_store()
    store.touch_many({active[pair]: event.received_at for pair, event in latest.items() if pair in active})

    starting = {pair: event for pair, event in latest.items() if pair not in active}
    if not starting:
        return
    who = events_who(event_ids=[e.id for e in starting.values()])
    docs = []
    for (customer_id, channel), event in starting.items():
        sent = who.get(event.id)
        docs.append(
            SessionDoc(
                id=str(uuid.uuid4()),
                customer_id=customer_id,
                channel=channel,
                started_channel=channel,
                device="",
                version=1,
                state={},
                started_at=event.received_at,
                last_seen_at=event.received_at,
                channels=(channel,),
                source_ids=(str(event.source_id),),
                user_id=sent.user_id if sent else "",
                anonymous_id=sent.anonymous_id if sent else "",
            )
        )
    created = store.create_many(docs, origin="events")
    now = max(e.received_at for e in starting.values())
    # The docs belong to live profiles, whose clusters were read above.
    _record_started_over(created, now, {live: (live, members) for live, members in clusters.values()})
    by_source: dict[str, list[tuple[SessionDoc, dict[str, Any]]]] = defaultdict(list)
    for doc in created:
        by_source[doc.source_ids[0]].append((doc, {"channel": doc.channel, "origin": "events"}))
    for source_id, items in by_source.items():
        _emit(source_info(source_id=source_id), "Session Started", items, now)


def sessions_end_inactive(*, now: datetime, limit: int = 1000) -> int:
    """End sessions idle past their channel's timeout (Session Ended, reason inactive). Rows
    another worker holds are skipped, so concurrent sweeps never end a session twice."""
    timeouts: dict[str, int] = settings.SESSIONS_INACTIVITY_SECONDS
    idle = Q()
    for channel, seconds in timeouts.items():
        if channel != "default":
            idle |= Q(channel=channel, last_seen_at__lt=now - timedelta(seconds=seconds))
    others = [c for c in timeouts if c != "default"]
    idle |= Q(last_seen_at__lt=now - timedelta(seconds=timeouts["default"])) & ~Q(channel__in=others)
    with transaction.atomic():
        records = list(
            SessionRecord.objects.select_for_update(skip_locked=True)
            .filter(idle, ended_at=None)
            .order_by("last_seen_at")[:limit]
        )
        ended = []
        for record in records:
            doc = to_doc(record)
            ended.append(
                doc.evolve(
                    version=doc.version + 1,
                    ended_at=min(now, doc.last_seen_at + inactivity_timeout(doc.channel)),
                    end_reason=EndReason.INACTIVE,
                    ended_channel=doc.channel,
                )
            )
        session_store().replace_many(ended)
        by_source: dict[str, list[tuple[SessionDoc, dict[str, Any]]]] = defaultdict(list)
        for doc in ended:
            if doc.source_ids:
                by_source[doc.source_ids[-1]].append((doc, _ended_properties(doc)))
        for source_id, items in by_source.items():
            _emit(source_info(source_id=source_id), "Session Ended", items, now)
    return len(ended)
