"""Reads on the profile store."""

import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.db.models import Q, QuerySet

from config.core.secrets import digest
from profiles.contracts import SourceInfo
from profiles.identifiers import normalize
from profiles.models import Customer, Event, Identity, Source

_source_cache: dict[str, tuple[float, SourceInfo | None]] = {}
_source_cache_lock = threading.Lock()


def source_for_write_key(write_key: str) -> SourceInfo | None:
    """The source a write key belongs to, or None. Cached per process for
    SOURCE_CACHE_SECONDS, so ingestion makes no database round trip for it; a disabled or
    rotated key stops working within that time."""
    key_hash = digest(write_key)
    ttl = settings.SOURCE_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        cached = _source_cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
    source = Source.objects.filter(write_key_hash=key_hash).first()
    info = (
        SourceInfo(
            id=source.id,
            name=source.name,
            channel=source.channel,
            enabled=source.enabled,
            identity_kinds=frozenset(source.identity_kinds or ()),
            allowed_origins=frozenset(source.allowed_origins or ()),
        )
        if source
        else None
    )
    if ttl > 0:
        with _source_cache_lock:
            if len(_source_cache) > 10_000:
                _source_cache.clear()
            _source_cache[key_hash] = (now + ttl, info)
    return info


def customer_find(*, kind: str, value: str) -> Customer | None:
    """The live customer holding an identity, normalised as ingestion normalises it."""
    normalized = normalize(kind, value, settings.DEFAULT_PHONE_REGION)
    if normalized is None:
        return None
    identity = Identity.objects.filter(kind=kind, value=normalized).select_related("customer").first()
    if identity is None:
        return None
    return customer_live(identity.customer)


def customer_live(customer: Customer) -> Customer:
    """Follow merged_into to the profile that survived."""
    seen = {customer.id}
    while customer.merged_into_id is not None and customer.merged_into_id not in seen:
        seen.add(customer.merged_into_id)
        customer = Customer.objects.get(id=customer.merged_into_id)
    return customer


def customer_get(*, customer_id: UUID) -> Customer | None:
    customer = Customer.objects.filter(id=customer_id).first()
    return customer_live(customer) if customer else None


def customer_merged_ids(*, customer: Customer) -> list[UUID]:
    return list(Customer.objects.filter(merged_into=customer).values_list("id", flat=True))


def customer_events(*, customer: Customer) -> QuerySet[Event]:
    """Newest first; (timestamp, id) keeps the order total for cursor pagination."""
    return Event.objects.filter(customer=customer).order_by("-timestamp", "-id")


def customers_existing(*, customer_ids: list[UUID]) -> list[UUID]:
    return list(Customer.objects.filter(id__in=customer_ids).values_list("id", flat=True))


def customer_merge_history(*, customer_id: UUID) -> dict[str, object] | None:
    """Merges into and out of a customer (by any id it had), and refusals that named it."""
    from profiles.models import MergeRecord, MergeRefusal

    if not Customer.objects.filter(id=customer_id).exists():
        return None
    merges = MergeRecord.objects.filter(Q(survivor_id=customer_id) | Q(merged_id=customer_id)).order_by("-id")
    refusals = MergeRefusal.objects.filter(customer_ids__contains=[str(customer_id)]).order_by("-id")
    return {"merges": list(merges), "refusals": list(refusals)}


def event_message_ids(*, event_ids: list[int]) -> dict[int, str]:
    """{event id: messageId} for these events, in one query (trace attributes at routing)."""
    return dict(Event.objects.filter(id__in=event_ids).values_list("id", "message_id"))


# --- For other apps: who a customer is now, and what a source has seen of it ------------------


_system_sources: dict[UUID, bool] = {}


def sources_system(*, source_ids: Collection[UUID]) -> frozenset[UUID]:
    """Which of these sources are Throughline's own (profiles.services.SYSTEM_SOURCE_PREFIX):
    their events are message outcomes and segment changes, not a customer's activity. Known
    answers are kept per process (a source's name is not reused), so a routed chunk costs at
    most one query, and none once its sources have been seen."""
    from profiles.services import SYSTEM_SOURCE_PREFIX

    unknown = {i for i in source_ids if i not in _system_sources}
    if unknown:
        names = dict(Source.objects.filter(id__in=unknown).values_list("id", "name"))
        for source_id in unknown:
            _system_sources[source_id] = names.get(source_id, "").startswith(SYSTEM_SOURCE_PREFIX)
    return frozenset(i for i in source_ids if _system_sources.get(i))


def customer_clusters(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, tuple[UUID, list[UUID]]]:
    """For each id asked for: the live profile behind it and that profile's cluster (the live id
    first, then every profile merged into it). Two queries whatever the number of ids; an id
    with no profile is its own cluster. Merging keeps `merged_into` one hop, so the live profile
    is `merged_into` or the profile itself."""
    asked = {UUID(str(i)) for i in customer_ids}
    if not asked:
        return {}
    live_of = {
        cid: merged_into or cid
        for cid, merged_into in Customer.objects.filter(id__in=asked).values_list("id", "merged_into_id")
    }
    for cid in asked - live_of.keys():
        live_of[cid] = cid
    members: dict[UUID, list[UUID]] = {live: [live] for live in set(live_of.values())}
    for cid, live in (
        Customer.objects.filter(merged_into_id__in=list(members)).order_by("id").values_list("id", "merged_into_id")
    ):
        members[live].append(cid)
    return {cid: (live, members[live]) for cid, live in live_of.items()}


def source_info(*, source_id: UUID | str) -> SourceInfo | None:
    source = Source.objects.filter(id=source_id).first()
    if source is None:
        return None
    return SourceInfo(
        id=source.id,
        name=source.name,
        channel=source.channel,
        enabled=source.enabled,
        identity_kinds=frozenset(source.identity_kinds or ()),
    )


def source_has_identified(
    *, source_id: UUID | str, customer_ids: Collection[UUID], ignoring_events: Collection[str] = ()
) -> bool:
    """Whether the source created one of these profiles' identities or sent an event for them
    (other than events named in `ignoring_events`)."""
    if Identity.objects.filter(customer_id__in=customer_ids, source_id=source_id).exists():
        return True
    events = Event.objects.filter(customer_id__in=customer_ids, source_id=source_id)
    if ignoring_events:
        events = events.exclude(name__in=ignoring_events)
    return events.exists()


def identity_customer_for_source(
    *, source_id: UUID | str, kind: str, value: str, ignoring_events: Collection[str] = ()
) -> UUID | None:
    """The profile holding identity (kind, value), if the source has itself identified it by
    that identity: created the identity, or sent an event carrying it as `kind` (user_id or
    anonymous_id; other than events named in `ignoring_events`)."""
    normalized = normalize(kind, value, settings.DEFAULT_PHONE_REGION)
    if normalized is None:
        return None
    identity = Identity.objects.filter(kind=kind, value=normalized).only("customer_id", "source_id").first()
    if identity is None:
        return None
    if identity.source_id == source_id or str(identity.source_id) == str(source_id):
        return identity.customer_id
    if kind not in ("user_id", "anonymous_id"):
        return None
    events = Event.objects.filter(customer_id=identity.customer_id, source_id=source_id, **{kind: normalized})
    if ignoring_events:
        events = events.exclude(name__in=ignoring_events)
    return identity.customer_id if events.exists() else None


@dataclass(frozen=True, slots=True)
class EventWho:
    """Whom an accepted event is about, as it was sent."""

    customer_id: UUID
    user_id: str
    anonymous_id: str


def events_who(*, event_ids: Collection[int]) -> dict[int, EventWho]:
    return {
        event_id: EventWho(customer_id, user_id, anonymous_id)
        for event_id, customer_id, user_id, anonymous_id in Event.objects.filter(id__in=list(event_ids)).values_list(
            "id", "customer_id", "user_id", "anonymous_id"
        )
    }
