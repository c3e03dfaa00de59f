"""Reads of the journeys app: versions, enrollments and their history, and what the engine
needs to know about a customer (through profiles' facade)."""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
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
from profiles import facade as profiles
from profiles.contracts import CustomerProfile


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
    """Properties of stored events, which routing's StoredEvent leaves out; one query."""
    return profiles.event_properties(event_ids=event_ids)


def customer_traits(*, customer_id: UUID) -> tuple[CustomerProfile | None, dict[str, Any]]:
    customer = profiles.customer_profile(customer_id=customer_id)
    return customer, dict(customer.traits) if customer is not None else {}


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
        return self._chosen.get(channel, self._chosen.get(profiles.ANY_CHANNEL, self._fallback))

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
        return _ChannelConsent(chosen, chosen.get(profiles.ANY_CHANNEL, self._defaults.get(purpose, False)))

    def __iter__(self) -> Iterator[str]:
        return iter({*self._chosen, *self._defaults})

    def __len__(self) -> int:
        return len({*self._chosen, *self._defaults})


class _Identified(Protocol):
    @property
    def id(self) -> UUID: ...


def customer_consent(*, customer: _Identified) -> Mapping[str, Mapping[str, bool]]:
    """purpose -> channel -> allowed, as the condition language reads it: resolved on access the
    way delivery resolves consent, so a condition, a segment, decide and a send agree."""
    chosen: dict[str, dict[str, bool]] = {}
    for state in profiles.consent_states(customer_id=customer.id):
        chosen.setdefault(state.purpose, {})[state.channel] = state.status == "granted"
    return _Consent(chosen, profiles.consent_defaults())


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
