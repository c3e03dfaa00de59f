"""Reads on consent, suppression and everything held about a person."""

import time
from collections.abc import Collection, Iterable, Iterator
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from profiles import contracts
from profiles.contracts import ConsentState
from profiles.identifiers import IdentityKey, normalize
from profiles.models import Customer, Event, Identity, MergeRecord
from profiles.privacy import conventions, hashing
from profiles.privacy.models import (
    Consent,
    ConsentChange,
    ConsentStatus,
    ErasedCustomer,
    Erasure,
    ErasureTombstone,
    PrivacyAudit,
)
from profiles.selectors import customer_member_ids

# With no choice recorded, a purpose is allowed only if it is listed here: marketing and
# analytics need an opt-in, messages a customer needs to receive (receipts, password resets) do
# not. Settings may override it with CONSENT_DEFAULTS = {"purpose": True|False}.
DEFAULT_CONSENT = {"transactional": True}
EXPORT_CHUNK_BYTES = 64 * 1024
EXPORT_FORMAT = "throughline.customer-export/1"


# --- Consent ----------------------------------------------------------------------------------


def consent_defaults() -> dict[str, bool]:
    return {**DEFAULT_CONSENT, **getattr(settings, "CONSENT_DEFAULTS", {})}


def _latest(states: Iterable[ConsentState]) -> dict[tuple[str, str], ConsentState]:
    """Per purpose and channel, the latest choice; at the same instant a denial wins."""
    best: dict[tuple[str, str], ConsentState] = {}
    for state in states:
        key = (state.purpose, state.channel)
        held = best.get(key)
        if (
            held is None
            or state.changed_at > held.changed_at
            or (state.changed_at == held.changed_at and state.status == ConsentStatus.DENIED)
        ):
            best[key] = state
    return best


def consent_current(*, customer: Customer) -> list[ConsentState]:
    """The customer's consent now, over it and the profiles merged into it."""
    rows = Consent.objects.filter(customer_id__in=customer_member_ids(customer_id=customer.id))
    states = _latest(
        ConsentState(r.purpose, r.channel, r.status, r.changed_at, r.origin, r.customer_id) for r in rows
    ).values()
    return sorted(states, key=lambda s: (s.purpose, s.channel))


def consent_history(*, customer: Customer) -> list[ConsentChange]:
    """Every consent choice received for the customer and its merged profiles, newest first."""
    return list(
        ConsentChange.objects.filter(customer_id__in=customer_member_ids(customer_id=customer.id))
        .select_related("source")
        .order_by("-changed_at", "-id")
    )


def consent_allows(*, customer_id: UUID, purpose: str, channel: str) -> bool:
    """May this customer be contacted (or its data used) for `purpose` on `channel`?"""
    return consent_allows_many(customer_ids=[customer_id], purpose=purpose, channel=channel)[customer_id]


def consent_allows_many(*, customer_ids: Collection[UUID], purpose: str, channel: str) -> dict[UUID, bool]:
    """The same question for many customers in two queries, as delivery asks it at send time.

    The choice for the channel itself wins over one for every channel ("*"), whichever is
    newer: a person who said "no SMS" is not texted because they later accepted "marketing" on
    a cookie banner. With no choice at all, the purpose's default applies (consent_defaults).
    Unknown customers are not allowed anything.
    """
    name = conventions.normalize_purpose(purpose)
    where = conventions.normalize_channel(channel)
    if name is None or where is None:
        raise ValueError(f"invalid purpose or channel: {purpose!r}, {channel!r}")
    owner_of = {
        cid: merged_into or cid
        for cid, merged_into in Customer.objects.filter(id__in=list(customer_ids)).values_list("id", "merged_into_id")
    }
    owners = set(owner_of.values())
    by_owner: dict[UUID, list[ConsentState]] = {}
    rows = Consent.objects.filter(
        Q(customer_id__in=owners) | Q(customer__merged_into_id__in=owners),
        purpose=name,
        channel__in=[where, conventions.ANY_CHANNEL],
    ).values_list("customer_id", "customer__merged_into_id", "channel", "status", "changed_at", "origin")
    for cid, merged_into, row_channel, status, changed_at, origin in rows:
        by_owner.setdefault(merged_into or cid, []).append(
            ConsentState(name, row_channel, status, changed_at, origin, cid)
        )
    default = consent_defaults().get(name, False)
    answer: dict[UUID, bool] = {}
    for cid in customer_ids:
        owner = owner_of.get(cid)
        if owner is None:
            answer[cid] = False
            continue
        latest = _latest(by_owner.get(owner, ()))
        state = latest.get((name, where)) or latest.get((name, conventions.ANY_CHANNEL))
        answer[cid] = default if state is None else state.status == ConsentStatus.GRANTED
    return answer


# --- Erasure and suppression ------------------------------------------------------------------


def erasure_for(*, customer_id: UUID) -> Erasure | None:
    """The erasure that removed this customer id, if one did."""
    erased = ErasedCustomer.objects.select_related("erasure").filter(customer_id=customer_id).first()
    return erased.erasure if erased else None


def _hash_key() -> bytes:
    """PRIVACY_HASH_KEY when configured, else a key derived from the Django secret key. Either
    way it must not change: tombstones hashed with another key no longer match."""
    return hashing.derive_key(getattr(settings, "PRIVACY_HASH_KEY", "") or settings.SECRET_KEY)


def identity_hash(identity: IdentityKey) -> str:
    return hashing.identity_hash(_hash_key(), identity)


def normalized_identity(*, kind: str, value: str) -> IdentityKey | None:
    normalized = normalize(kind, value, settings.DEFAULT_PHONE_REGION)
    return (kind, normalized) if normalized else None


def suppressed_identities(keys: Iterable[IdentityKey]) -> set[IdentityKey]:
    """Which of these (normalised) identities belong to a person erased with suppression: one
    query for a whole batch, for ingestion to drop their messages before storing anything."""
    secret = _hash_key()
    by_hash = {hashing.identity_hash(secret, key): key for key in set(keys)}
    if not by_hash:
        return set()
    found = ErasureTombstone.objects.filter(key_hash__in=list(by_hash), suppress=True).values_list(
        "key_hash", flat=True
    )
    return {by_hash[key_hash] for key_hash in found}


# --- Export -----------------------------------------------------------------------------------


def _row(instance: models.Model) -> dict[str, Any]:
    """Every stored column of a row: an export leaves nothing out, including columns other apps
    add later."""
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def customer_export_chunks(*, customer: Customer) -> Iterator[bytes]:
    """The export document, in chunks: everything small first, then the events streamed from a
    server-side cursor, oldest first, so a profile with millions of events never sits whole in
    memory."""
    cluster = customer_member_ids(customer_id=customer.id)
    # Sessions are orchestration's: they come, as deliveries do, from the registered providers.
    sections: dict[str, list[dict[str, Any]]] = {"sessions": [], "deliveries": []}
    for section, providers in contracts.export_providers().items():
        sections.setdefault(section, []).extend(row for provider in providers for row in provider(cluster))
    customers = {c.id: c for c in Customer.objects.filter(id__in=cluster)}
    head = {
        "format": EXPORT_FORMAT,
        "generated_at": timezone.now(),
        "customer": _row(customers[customer.id]),
        "merged_profiles": [_row(customers[cid]) for cid in cluster[1:] if cid in customers],
        "identities": [_row(i) for i in Identity.objects.filter(customer_id__in=cluster).order_by("kind", "value")],
        "consent": {
            "current": [
                {
                    "purpose": s.purpose,
                    "channel": s.channel,
                    "status": s.status,
                    "changed_at": s.changed_at,
                    "origin": s.origin,
                }
                for s in consent_current(customer=customer)
            ],
            "history": [_row(c) for c in consent_history(customer=customer)],
        },
        "merges": [
            _row(m)
            for m in MergeRecord.objects.filter(Q(survivor_id__in=cluster) | Q(merged_id__in=cluster)).order_by("id")
        ],
        **sections,
        "privacy_requests": [
            _row(a) for a in PrivacyAudit.objects.filter(customer_id__in=cluster).order_by("at", "id")
        ],
    }
    yield _dumps(head)[:-1] + b',"events":['
    buffer = bytearray()
    first = True
    fields = [field.attname for field in Event._meta.concrete_fields]
    for event in (
        Event.objects.filter(customer_id__in=cluster).order_by("timestamp", "id").values(*fields).iterator(2000)
    ):
        if not first:
            buffer += b","
        first = False
        buffer += _dumps(event)
        if len(buffer) >= EXPORT_CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    buffer += b"]}"
    yield bytes(buffer)


def suppression_in_force() -> bool:
    """Whether any erasure asked for suppression (ingestion skips its check until one does)."""
    return ErasureTombstone.objects.filter(suppress=True).exists()


_suppression_checked_at = -1e9
_suppression_active = False


def suppression_may_apply() -> bool:
    """Whether ingestion must check messages against suppressed identities: suppression_in_force,
    cached per process. Once true it stays true (the check per batch is one query); false is
    trusted for SUPPRESSION_CHECK_SECONDS from before the query that said so, and no longer:
    an erase that puts suppression in force first waits that long before it answers
    (services.customer_erase), so when it answers no process still trusts a false from before."""
    global _suppression_checked_at, _suppression_active  # noqa: PLW0603 - a per-process cache
    if _suppression_active:
        return True
    now = time.monotonic()
    if now - _suppression_checked_at >= settings.SUPPRESSION_CHECK_SECONDS:
        _suppression_active = suppression_in_force()
        _suppression_checked_at = now
    return _suppression_active
