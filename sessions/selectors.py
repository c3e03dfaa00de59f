"""Reads on sessions, and the object-level authorization rules.

A source may read and write a session when it is linked to it (it started or resumed it) or
when it has itself identified the session's customer: it created one of the customer's
identities, or sent an event for the customer other than the session lifecycle events this
module emits (so resuming through a token does not widen a source's access to the customer's
other sessions). Anything else is answered as if the session did not exist.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Count, F, Q

from config.core import metrics
from config.core.errors import NotFound
from profiles import facade as profiles
from profiles.contracts import SourceInfo
from sessions.documents import Outcome, SessionDoc
from sessions.models import ContinuationKind, SessionContinuation, SessionRecord
from sessions.store import session_store, to_doc

LIFECYCLE_EVENTS = frozenset({"Session Started", "Session Ended", "Session Resumed"})
IDENTITY_KINDS = ("user_id", "anonymous_id")


def customer_cluster(*, customer_id: UUID | str) -> list[UUID]:
    """The live profile behind `customer_id` and every profile merged into it. A merge moves
    identities and events to the survivor but a session stays on the profile it began on (so
    an unmerge gives it back untouched): every read of a customer's sessions reads the cluster."""
    return customer_clusters(customer_ids=[customer_id])[UUID(str(customer_id))][1]


def customer_clusters(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, tuple[UUID, list[UUID]]]:
    """Per customer id: its live profile and that profile's cluster (profiles.facade); an id
    with no profile (erased) reads as a cluster of its own."""
    asked = {UUID(str(i)) for i in customer_ids}
    found = profiles.customer_clusters(customer_ids=asked)
    return {i: (found[i].id, list(found[i].member_ids)) if i in found else (i, [i]) for i in asked}


def source_identified_customer(*, source_id: UUID | str, customer_id: UUID | str) -> bool:
    return profiles.source_has_identified(
        source_id=source_id, customer_ids=customer_cluster(customer_id=customer_id), ignoring_events=LIFECYCLE_EVENTS
    )


def source_identity_customer(*, source_id: UUID | str, kind: str, value: str) -> UUID | None:
    """The customer holding identity (kind, value), if this source has itself identified it:
    created the identity, or sent an event carrying it."""
    if kind not in IDENTITY_KINDS:
        return None
    return profiles.identity_customer_for_source(
        source_id=source_id, kind=kind, value=value, ignoring_events=LIFECYCLE_EVENTS
    )


def source_may_access(*, source: SourceInfo, doc: SessionDoc) -> bool:
    return doc.linked_to(source.id) or source_identified_customer(source_id=source.id, customer_id=doc.customer_id)


def session_for_source(*, source: SourceInfo, session_id: str) -> SessionDoc:
    metrics.SESSION_OPERATIONS.labels(operation="read").inc()
    doc = session_store().get(session_id)
    if doc is None or not source_may_access(source=source, doc=doc):
        raise NotFound("no such session", code="session_not_found")
    return doc


def session_get(*, session_id: str) -> SessionDoc | None:
    return session_store().get(session_id)


def customer_sessions(*, customer_id: UUID | str, active: bool, limit: int = 50) -> list[SessionDoc]:
    """The sessions of the customer and of the profiles merged into it, newest first."""
    cluster = customer_cluster(customer_id=customer_id)
    if active:
        return session_store().list_active([str(c) for c in cluster])[:limit]
    records = SessionRecord.objects.filter(customer_id__in=cluster).order_by("-last_seen_at")[:limit]
    return [to_doc(r) for r in records]


def session_list(*, customer_id: UUID | None, active: bool | None, limit: int) -> list[SessionDoc]:
    """Newest first; a customer's are those of its live profile and every profile merged into it,
    whichever of their ids is asked for."""
    records = SessionRecord.objects.order_by("-last_seen_at")
    if customer_id is not None:
        records = records.filter(customer_id__in=customer_cluster(customer_id=customer_id))
    if active is not None:
        records = records.filter(ended_at__isnull=active)
    return [to_doc(r) for r in records[:limit]]


def source_info(*, source_id: UUID | str) -> SourceInfo | None:
    return profiles.source_info(source_id=source_id)


@dataclass(frozen=True, slots=True)
class Kpis:
    since: datetime
    until: datetime
    resumed: int
    started_over: int
    continued: int
    completed_elsewhere: int

    @property
    def context_retention(self) -> float | None:
        """Of the cross-channel continuations, the share that resumed a session."""
        total = self.resumed + self.started_over
        return self.resumed / total if total else None

    @property
    def cross_channel_completion(self) -> float | None:
        """Of the sessions begun on one channel and continued on another, the share completed
        on a channel other than the one they began on."""
        return self.completed_elsewhere / self.continued if self.continued else None


def session_kpis(*, since: datetime, until: datetime) -> Kpis:
    continuations = SessionContinuation.objects.filter(created_at__gte=since, created_at__lt=until).aggregate(
        resumed=Count("id", filter=Q(kind=ContinuationKind.RESUMED)),
        started_over=Count("id", filter=Q(kind=ContinuationKind.STARTED_OVER)),
    )
    # Sessions begun in the period that were continued on another channel: they have been
    # resumed at least once (a resumed continuation points at them).
    continued = SessionRecord.objects.filter(
        started_at__gte=since,
        started_at__lt=until,
        id__in=SessionContinuation.objects.filter(kind=ContinuationKind.RESUMED).values("to_session_id"),
    )
    completed = continued.filter(outcome=Outcome.COMPLETED).exclude(ended_channel=F("started_channel"))
    return Kpis(
        since=since,
        until=until,
        resumed=continuations["resumed"],
        started_over=continuations["started_over"],
        continued=continued.count(),
        completed_elsewhere=completed.count(),
    )
