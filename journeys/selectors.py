"""Reads of the journeys app: versions, enrollments and their history, and what the engine
needs to know about a customer (through profiles' selectors)."""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, Max, Q

from journeys.models import (
    Enrollment,
    EnrollmentStatus,
    Journey,
    JourneyVersion,
    SegmentMembership,
    Timer,
    VersionStatus,
)
from profiles.models import Customer, Event, Identity
from profiles.privacy.conventions import ANY_CHANNEL
from profiles.privacy.selectors import consent_current, consent_defaults
from profiles.selectors import customer_get


def journey_get(*, journey_id: UUID) -> Journey | None:
    return Journey.objects.filter(id=journey_id).first()


def version_get(*, journey_id: UUID, number: int) -> JourneyVersion | None:
    return JourneyVersion.objects.select_related("journey").filter(journey_id=journey_id, number=number).first()


def versions_published() -> list[JourneyVersion]:
    return list(
        JourneyVersion.objects.select_related("journey").filter(status=VersionStatus.PUBLISHED).order_by("journey__key")
    )


def versions_by_id(*, version_ids: Iterable[UUID]) -> dict[UUID, JourneyVersion]:
    return {v.id: v for v in JourneyVersion.objects.select_related("journey").filter(id__in=list(version_ids))}


def enrollment_get(*, enrollment_id: UUID) -> Enrollment | None:
    return Enrollment.objects.select_related("journey", "version").filter(id=enrollment_id).first()


def customer_enrollments(*, customer_ids: list[UUID], limit: int = 100) -> list[Enrollment]:
    """A customer's enrollments, newest first, with their history prefetched."""
    return list(
        Enrollment.objects.select_related("journey", "version")
        .prefetch_related("history")
        .filter(customer_id__in=customer_ids)
        .order_by("-entered_at")[:limit]
    )


@dataclass(frozen=True, slots=True)
class PastEntries:
    count: int
    last_entered_at: datetime | None
    active: bool


def past_entries(*, pairs: set[tuple[UUID, UUID]]) -> dict[tuple[UUID, UUID], PastEntries]:
    """(journey id, customer id) -> how often and when last they entered; one query."""
    if not pairs:
        return {}
    journeys = {j for j, _ in pairs}
    customers = {c for _, c in pairs}
    rows = (
        Enrollment.objects.filter(journey_id__in=journeys, customer_id__in=customers)
        .values("journey_id", "customer_id")
        .annotate(n=Count("id"), last=Max("entered_at"), active=Count("id", filter=Q(status=EnrollmentStatus.ACTIVE)))
    )
    return {
        (row["journey_id"], row["customer_id"]): PastEntries(row["n"], row["last"], row["active"] > 0)
        for row in rows
        if (row["journey_id"], row["customer_id"]) in pairs
    }


def event_properties(*, event_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Properties of stored events, which routing's StoredEvent leaves out; one query. (Not the
    context: nothing in a journey reads it, and it is most of an event's size.)"""
    if not event_ids:
        return {}
    return dict(Event.objects.filter(id__in=event_ids).values_list("id", "properties"))


def customer_traits(*, customer_id: UUID) -> tuple[Customer | None, dict[str, Any]]:
    customer = customer_get(customer_id=customer_id)
    return customer, dict(customer.traits or {}) if customer is not None else {}


def customer_segments(*, customer_id: UUID) -> frozenset[str]:
    return frozenset(SegmentMembership.objects.filter(customer_id=customer_id).values_list("segment__key", flat=True))


class _ChannelConsent(Mapping[str, bool]):
    """One purpose's consent by channel, resolved on access as delivery resolves it
    (consent_allows_many): the choice for the channel, else the one for every channel ("*"),
    else the purpose's default. Any channel name answers."""

    __slots__ = ("_chosen", "_fallback")

    def __init__(self, chosen: Mapping[str, bool], fallback: bool) -> None:
        self._chosen = chosen
        self._fallback = fallback

    def __getitem__(self, channel: str) -> bool:
        return self._chosen.get(channel, self._chosen.get(ANY_CHANNEL, self._fallback))

    def __iter__(self) -> Iterator[str]:
        return iter(self._chosen)

    def __len__(self) -> int:
        return len(self._chosen)


class _Consent(Mapping[str, Mapping[str, bool]]):
    """purpose -> channel -> allowed, for the condition language."""

    __slots__ = ("_chosen", "_defaults")

    def __init__(self, chosen: dict[str, dict[str, bool]], defaults: Mapping[str, bool]) -> None:
        self._chosen = chosen
        self._defaults = defaults

    def __getitem__(self, purpose: str) -> Mapping[str, bool]:
        chosen = self._chosen.get(purpose, {})
        return _ChannelConsent(chosen, chosen.get(ANY_CHANNEL, self._defaults.get(purpose, False)))

    def __iter__(self) -> Iterator[str]:
        return iter({*self._chosen, *self._defaults})

    def __len__(self) -> int:
        return len({*self._chosen, *self._defaults})


def customer_consent(*, customer: Customer) -> Mapping[str, Mapping[str, bool]]:
    """purpose -> channel -> allowed, as the condition language reads it: resolved on access the
    way delivery resolves consent, so a condition, a segment, decide and a send agree."""
    chosen: dict[str, dict[str, bool]] = {}
    for state in consent_current(customer=customer):
        chosen.setdefault(state.purpose, {})[state.channel] = state.status == "granted"
    return _Consent(chosen, consent_defaults())


def customer_message_ids(*, customer_id: UUID) -> dict[str, Any]:
    """userId / anonymousId (else email, phone) that make ingestion resolve a message to this
    customer: journeys' own identify and track calls carry them."""
    cluster = [customer_id, *Customer.objects.filter(merged_into_id=customer_id).values_list("id", flat=True)]
    identities = dict(
        Identity.objects.filter(customer_id__in=cluster).order_by("created_at").values_list("kind", "value")
    )
    if "user_id" in identities:
        return {"userId": identities["user_id"]}
    if "anonymous_id" in identities:
        return {"anonymousId": identities["anonymous_id"]}
    traits = {kind: identities[kind] for kind in ("email", "phone") if kind in identities}
    return {"anonymousId": f"tl-customer-{customer_id}", "context": {"traits": traits}} if traits else {}


def waiting_counts(*, version: JourneyVersion) -> dict[str, int]:
    """Active enrollments of a version by the step they are at."""
    rows = (
        Enrollment.objects.filter(version=version, status=EnrollmentStatus.ACTIVE)
        .values("step")
        .annotate(n=Count("id"))
    )
    return {row["step"]: row["n"] for row in rows}


def timers_next_due(*, after: datetime, until: datetime) -> datetime | None:
    """The due time of the first unfired timer due in (after, until], if any (the due-time index)."""
    return (
        Timer.objects.filter(fired_at__isnull=True, due_at__gt=after, due_at__lte=until)
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
