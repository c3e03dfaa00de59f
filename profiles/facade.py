"""What other apps may call in profiles. With profiles.contracts, the only modules of profiles
they import (import-linter checks it, see pyproject.toml).

It answers in contracts' frozen dataclasses and plain data, never ORM rows, so profiles can
change its tables without the other apps noticing. No business logic lives here: each function
hands over to the selector or service that owns the question.
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from profiles import computed, identifiers, messages, retention, selectors, services, writekey
from profiles.computed_traits import computed_traits_from_state as _computed_traits_from_state
from profiles.computed_traits import computed_traits_on_routed
from profiles.computed_traits import definitions as _computed_definitions
from profiles.contracts import (
    ConsentState,
    CustomerCluster,
    CustomerProfile,
    CustomerReach,
    EmitResult,
    EventWho,
    InternalEvent,
    SentAs,
    SourceInfo,
)
from profiles.identifiers import IdentityKey, message_ids
from profiles.ingest import event_ingest
from profiles.privacy import conventions as consent_conventions
from profiles.privacy import selectors as privacy_selectors
from profiles.privacy import services as privacy_services
from profiles.privacy.conventions import ANY_CHANNEL, ConsentChoice

__all__ = [
    "ANY_CHANNEL",
    "ConsentChoice",
    "computed_definitions",
    "computed_traits_from_state",
    "computed_traits_on_routed",
    "consent_allows",
    "consent_allows_many",
    "consent_apply_events",
    "consent_conventions",
    "consent_defaults",
    "consent_set",
    "consent_states",
    "customer_cluster",
    "customer_clusters",
    "customer_find",
    "customer_identities",
    "customer_message_ids",
    "customer_profile",
    "customer_profiles",
    "customer_reach",
    "event_emit",
    "event_ingest",
    "event_message_ids",
    "event_properties",
    "events_track_recent",
    "events_who",
    "identity_customer_for_source",
    "identity_normalize",
    "json_unstorable",
    "message_ids",
    "normalize_email",
    "normalize_phone",
    "outbox_claim",
    "outbox_failed",
    "outbox_reclaim_stale",
    "quarantine_counts",
    "retention_apply",
    "source_authenticate",
    "source_has_identified",
    "source_info",
    "sources_named",
    "sources_system",
    "system_source",
]

# --- Who is this customer ---------------------------------------------------------------------


def customer_clusters(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, CustomerCluster]:
    """The one answer to "who is this customer", for many ids in two queries: a merged-away id
    resolves to its survivor's cluster, an id with no profile is left out
    (profiles.selectors.customer_clusters)."""
    return selectors.customer_clusters(customer_ids=customer_ids)


def customer_cluster(*, customer_id: UUID | str) -> CustomerCluster | None:
    return selectors.customer_cluster(customer_id=customer_id)


def customer_profiles(*, customer_ids: Iterable[UUID | str], computed: bool = False) -> dict[UUID, CustomerProfile]:
    """The live profile behind each id (unknown ids left out), keyed by the id asked for."""
    return selectors.customer_profiles(customer_ids=customer_ids, computed=computed)


def customer_profile(*, customer_id: UUID | str, computed: bool = False) -> CustomerProfile | None:
    return next(iter(customer_profiles(customer_ids=[customer_id], computed=computed).values()), None)


def customer_find(*, kind: str, value: str, computed: bool = False) -> CustomerProfile | None:
    """The live customer holding an identity, normalised as ingestion normalises it; one query."""
    return selectors.customer_profile_find(kind=kind, value=value, computed=computed)


def identity_normalize(*, kind: str, value: object) -> str | None:
    """An identity's value as ingestion stores it (emails lower-cased, phones in E.164 in the
    default region, ids trimmed), None when it cannot be one of that kind; a value holding NUL
    is a 400 `invalid_lookup`."""
    return selectors.identity_normalize(kind=kind, value=value)


def json_unstorable(value: dict[str, Any]) -> tuple[str, str] | None:
    """Why PostgreSQL could not keep `value` as JSON, as (code, detail): a NUL or a lone surrogate
    in a string or key, a number out of range, nesting past the messages' MAX_DEPTH; None when it
    can. The check ingestion applies to every message, for other requests that store JSON."""
    try:
        messages.check_values(value)
    except messages.MessageError as error:
        return error.code, error.detail
    return None


def customer_identities(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, list[IdentityKey]]:
    """Every (kind, value) of the person behind each id, oldest first."""
    return selectors.customer_identities(customer_ids=customer_ids)


def customer_message_ids(
    *, customer_ids: Iterable[UUID | str], sent_as: Mapping[UUID, SentAs] | None = None
) -> dict[UUID, dict[str, Any]]:
    """The one way to address a customer in a message (see profiles.selectors)."""
    return selectors.customer_message_ids(customer_ids=customer_ids, sent_as=sent_as)


# --- Events -----------------------------------------------------------------------------------


def event_emit(*, source_name: str, events: Sequence[InternalEvent], received_at: datetime | None = None) -> EmitResult:
    """Throughline's own identify and track calls about customers (profiles.services.event_emit)."""
    return services.event_emit(source_name=source_name, events=events, received_at=received_at)


def event_properties(*, event_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    return selectors.event_properties(event_ids=event_ids)


def event_message_ids(*, event_ids: list[int]) -> dict[int, str]:
    return selectors.event_message_ids(event_ids=event_ids)


def events_who(*, event_ids: Collection[int]) -> dict[int, EventWho]:
    return selectors.events_who(event_ids=event_ids)


def events_track_recent(
    *, customer_ids: Collection[UUID], name: str, since: datetime | None, limit: int
) -> dict[UUID, list[dict[str, Any]]]:
    return selectors.events_track_recent(customer_ids=customer_ids, name=name, since=since, limit=limit)


def quarantine_counts(*, since: datetime) -> tuple[list[tuple[str, int]], int]:
    return selectors.quarantine_counts(since=since)


# --- Sources ------------------------------------------------------------------------------------


def source_info(*, source_id: UUID | str) -> SourceInfo | None:
    return selectors.source_info(source_id=source_id)


def system_source(*, name: str) -> SourceInfo:
    return services.system_source(name=name)


def sources_named(*, prefix: str) -> list[SourceInfo]:
    return selectors.sources_named(prefix=prefix)


def sources_system(*, source_ids: Collection[UUID]) -> frozenset[UUID]:
    """Which of these sources are Throughline's own (their events are not a customer's activity)."""
    return selectors.sources_system(source_ids=source_ids)


def source_has_identified(
    *, source_id: UUID | str, customer_ids: Collection[UUID], ignoring_events: Collection[str] = ()
) -> bool:
    return selectors.source_has_identified(
        source_id=source_id, customer_ids=customer_ids, ignoring_events=ignoring_events
    )


def identity_customer_for_source(
    *, source_id: UUID | str, kind: str, value: str, ignoring_events: Collection[str] = ()
) -> UUID | None:
    return selectors.identity_customer_for_source(
        source_id=source_id, kind=kind, value=value, ignoring_events=ignoring_events
    )


# The one write-key check of every call a source makes (/v1 ingestion, sessions, decide): sources
# are profiles' objects. Bound, not wrapped: sessions' and decide's fast paths call it per request.
source_authenticate = writekey.source_authenticate


# --- The outbox, for routing --------------------------------------------------------------------

outbox_claim = services.outbox_claim
outbox_failed = services.outbox_failed
outbox_reclaim_stale = services.outbox_reclaim_stale

# --- Computed traits and consent ------------------------------------------------------------------


def computed_definitions() -> list[computed.Definition]:
    return _computed_definitions()


def computed_traits_from_state(*, state: Mapping[str, Any]) -> dict[str, Any]:
    """The computed traits of a profile whose stored computed state this is (decide reads the
    state in its own lookup statement, see journeys.decide_lookup)."""
    return _computed_traits_from_state(state)


consent_apply_events = privacy_services.consent_apply_events


def consent_states(*, customer_id: UUID) -> list[ConsentState]:
    """The person's consent now, over its profiles; [] for an unknown id."""
    customer = selectors.customer_get(customer_id=customer_id)
    return privacy_selectors.consent_current(customer=customer) if customer is not None else []


def consent_defaults() -> dict[str, bool]:
    return privacy_selectors.consent_defaults()


def consent_allows(*, customer_id: UUID, purpose: str, channel: str) -> bool:
    return privacy_selectors.consent_allows(customer_id=customer_id, purpose=purpose, channel=channel)


def consent_allows_many(*, customer_ids: Collection[UUID], purpose: str, channel: str) -> dict[UUID, bool]:
    return privacy_selectors.consent_allows_many(customer_ids=customer_ids, purpose=purpose, channel=channel)


def consent_set(
    *,
    customer_id: UUID,
    choices: Sequence[ConsentChoice],
    origin: str,
    actor: str,
    source_id: UUID | None = None,
    source_label: str = "",
) -> None:
    """Record consent choices for a customer (its live profile); see privacy.services.consent_set."""
    privacy_services.consent_set(
        customer_id=customer_id,
        choices=choices,
        origin=origin,
        actor=actor,
        source_id=source_id,
        source_label=source_label,
    )


# --- For channels: the people a batch of sends is for, and the identifiers of provider payloads --
# Identifier normalisation is exported here rather than from contracts: contracts holds data and
# hooks, and these are pure functions of profiles.identifiers (as `message_ids` above), which the
# provider adapters must apply exactly as ingestion does.

normalize_email = identifiers.normalize_email
normalize_phone = identifiers.normalize_phone


def customer_reach(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, CustomerReach]:
    """The live profile behind each id with the person's identities, keyed by the id asked for
    (unknown ids left out), in four queries whatever the number of ids."""
    return selectors.customer_reach(customer_ids=customer_ids)


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Profiles' retention (profiles/retention.py): events' partitions, dedup keys, quarantine."""
    return retention.retention_apply(now=now)
