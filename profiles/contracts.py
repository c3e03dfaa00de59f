"""What other apps may import from profiles: frozen data and the hooks they plug into."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import TextChoices


class ChannelKind(TextChoices):
    """The channels a source, an event and a session are on. Here rather than in profiles.models
    because the other apps' models name them too (sessions' channel fields), and they import
    contracts, never profiles' models."""

    WEB = "web"
    MOBILE = "mobile"
    EMAIL = "email"
    SMS = "sms"
    CHAT = "chat"
    POS = "pos"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    id: UUID
    name: str
    channel: str
    enabled: bool
    identity_kinds: frozenset[str]
    # Web origins allowed to send with the write key; empty allows any (docs/api.md, "Your website").
    allowed_origins: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An accepted event as routing sees it."""

    id: int
    source_id: UUID
    customer_id: UUID
    type: str
    name: str
    channel: str
    timestamp: datetime
    received_at: datetime
    # Whether it carries a consent choice (`context.consent`, or an identify's `consent` trait),
    # read with the claim so the consent handler skips the chunks that carry none.
    consent: bool = False


# --- Who a customer is, and how an internal event reaches it (profiles.facade returns these) -----


@dataclass(frozen=True, slots=True)
class CustomerCluster:
    """Who a customer id is now: the live profile (`id`; a merged-away id resolves to the profile
    it was merged into) and the profiles that make up the person (`member_ids`: the live id
    first, then every profile merged into it, in id order)."""

    id: UUID
    member_ids: tuple[UUID, ...]


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """A live customer as other apps read it. `computed` holds its computed traits only when
    the caller asked for them (they cost the definitions' evaluation)."""

    id: UUID
    member_ids: tuple[UUID, ...]
    traits: Mapping[str, Any]
    computed: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The latest choice recorded for a purpose on a channel ("*": every channel)."""

    purpose: str
    channel: str
    status: str
    changed_at: datetime
    origin: str
    customer_id: UUID


@dataclass(frozen=True, slots=True)
class SentAs:
    """How an accepted event was addressed when it was sent (its userId and anonymousId)."""

    user_id: str
    anonymous_id: str


@dataclass(frozen=True, slots=True)
class EventWho:
    """Whom an accepted event is about, as it was sent."""

    customer_id: UUID
    user_id: str
    anonymous_id: str


@dataclass(frozen=True, slots=True)
class InternalEvent:
    """An identify or track call one of Throughline's own parts makes about a customer.

    `message_id` makes it idempotent (a retried step or a recorded change stores it once);
    `sent_as`, when given, addresses it as an event the customer sent was addressed, so it
    resolves to the same profile the same way."""

    customer_id: UUID
    type: str
    message_id: str
    timestamp: datetime
    event: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    sent_as: SentAs | None = None


@dataclass(frozen=True, slots=True)
class EmitResult:
    """What `event_emit` did: events stored, and the customers nothing could address (an unknown
    id, or a profile with no user id, anonymous id, email or phone)."""

    accepted: int
    unaddressed: tuple[UUID, ...]


AcceptedListener = Callable[[list[int]], None]
_accepted_listeners: list[AcceptedListener] = []


def on_events_accepted(listener: AcceptedListener) -> None:
    """Register a callable run after commit with the ids of newly accepted events.

    Orchestration uses it to hand the events to routing; the outbox rows written in the same
    transaction make sure a listener that fails (broker down) delays routing and loses nothing.
    """
    if listener not in _accepted_listeners:
        _accepted_listeners.append(listener)


def notify_accepted(event_ids: list[int]) -> None:
    for listener in _accepted_listeners:
        listener(event_ids)


# --- Privacy and the customer 360: other apps hold data about a customer too ------------------
# Profiles cannot import them (dependencies point one way), so they plug in here from their
# AppConfig.ready(): what to delete on an erase, what to add to an export, what to show on the
# timeline.

ErasedListener = Callable[[list[UUID]], dict[str, int] | None]
_erased_listeners: list[ErasedListener] = []


def on_customer_erased(listener: ErasedListener) -> None:
    """Register a callable that deletes what its app holds about these customers.

    Called inside the erase transaction, before the profiles go, with every customer id being
    erased (the survivor and the profiles merged into it). It deletes its rows (so they commit
    or roll back with the erase), schedules anything outside the database (Redis keys) with
    `transaction.on_commit`, and may return counts per kind for the erasure record. It must be
    idempotent: an erase that fails is retried.
    """
    if listener not in _erased_listeners:
        _erased_listeners.append(listener)


def notify_erased(customer_ids: list[UUID]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for listener in _erased_listeners:
        for kind, count in (listener(customer_ids) or {}).items():
            counts[kind] = counts.get(kind, 0) + count
    return counts


MergedListener = Callable[[dict[UUID, list[UUID]]], None]
_merged_listeners: list[MergedListener] = []


def on_customers_merged(listener: MergedListener) -> None:
    """Register a callable that moves what its app holds about merged profiles to the survivor.

    Called once per merging call (an ingestion batch merges several groups at once), inside the
    merge transaction, after identities, sessions and events moved, with every merge of that
    call: {survivor id: the ids merged into it}. A survivor is never among the merged ids. It
    writes only to the database (so its changes commit or roll back with the merge), must be
    idempotent, and should take a fixed number of statements whatever the number of merges.
    """
    if listener not in _merged_listeners:
        _merged_listeners.append(listener)


def notify_merged(merges: dict[UUID, list[UUID]]) -> None:
    if not merges:
        return
    for listener in _merged_listeners:
        listener(merges)


ExportProvider = Callable[[list[UUID]], list[dict[str, Any]]]
_export_providers: dict[str, list[ExportProvider]] = {}


def on_customer_export(section: str, provider: ExportProvider) -> None:
    """Register a callable returning JSON-ready rows its app holds about these customers, shown
    under `section` in the export. `sessions` adds to the profile's sessions; `deliveries` is
    where the channels app puts the messages sent."""
    providers = _export_providers.setdefault(section, [])
    if provider not in providers:
        providers.append(provider)


def export_providers() -> dict[str, list[ExportProvider]]:
    return {section: list(providers) for section, providers in _export_providers.items()}


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One thing that happened to a customer. Entries sort newest first by (at, kind, key);
    `key` orders entries of one kind that share a time (fixed-width, so text order is numeric)."""

    at: datetime
    kind: str
    key: str
    id: str
    channel: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """A page request: the customer (`customer_id`, live) with every profile merged into it
    (`customer_ids`), entries strictly older than `before` (at, kind, key), at most `limit`."""

    customer_id: UUID
    customer_ids: tuple[UUID, ...]
    before: tuple[datetime, str, str] | None
    limit: int


TimelineSource = Callable[[TimelineQuery], list[TimelineEntry]]
_timeline_sources: list[tuple[frozenset[str], TimelineSource]] = []


def on_timeline(kinds: frozenset[str], source: TimelineSource) -> None:
    """Register a source of timeline entries of these kinds. It returns its newest entries
    older than `query.before`, newest first, at most `query.limit`, from an index."""
    if all(registered is not source for _, registered in _timeline_sources):
        _timeline_sources.append((kinds, source))


def timeline_sources() -> list[tuple[frozenset[str], TimelineSource]]:
    return list(_timeline_sources)


# --- What a send needs to reach a customer (profiles.facade.customer_reach) ----------------------


@dataclass(frozen=True, slots=True)
class CustomerReach:
    """A live customer with every (kind, value) identity of the person, its profiles merged into
    it included, oldest first: where a message on any channel can go (the email, phone and push
    token identities; the traits for a webhook's URL), read once for a batch of sends."""

    profile: CustomerProfile
    identities: tuple[tuple[str, str], ...]
