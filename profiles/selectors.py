"""Reads on the profile store."""

import threading
import time
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
