"""Writes on consent, erasure and the privacy audit trail."""

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import ProtectedError, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Lower
from django.utils import timezone

from config.core.errors import BadRequest, Conflict, NotFound
from config.core.transactions import atomic_retrying
from profiles import contracts
from profiles.contracts import StoredEvent
from profiles.identifiers import IdentityKey, normalize_phone
from profiles.models import Customer, Event, Identity, MergeRecord, MergeRefusal, QuarantinedMessage
from profiles.privacy import conventions, selectors
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.models import (
    Consent,
    ConsentChange,
    ConsentOrigin,
    ErasedCustomer,
    Erasure,
    ErasureTombstone,
    PrivacyAction,
    PrivacyAudit,
)
from profiles.selectors import customer_get, customer_member_ids

logger = logging.getLogger(__name__)

# A consent given "in the future" would pin the current state against every real change made
# until then; a few minutes allow for clock differences between callers and this server.
MAX_CLOCK_AHEAD = timedelta(minutes=5)
EVENT_DELETE_CHUNK = 10_000
MAX_LOCK_ROUNDS = 5

# Origins where the person acted and every act is evidence, even one that repeats the current
# state (a re-confirmed opt-in). Choices copied onto events are sent again and again by SDKs
# (Segment's consent object rides on every call): from those, only a change is history.
_EXPLICIT_ORIGINS = frozenset({ConsentOrigin.API, ConsentOrigin.WEBHOOK, ConsentOrigin.ADMIN})
_AUDITED_ORIGINS = frozenset({ConsentOrigin.API, ConsentOrigin.ADMIN})


# --- Audit ------------------------------------------------------------------------------------


def privacy_audit_record(
    *, action: str, actor: str, customer_id: UUID, detail: dict[str, Any] | None = None
) -> PrivacyAudit:
    """Record who did a privacy action to which customer. Writes one PrivacyAudit row."""
    return PrivacyAudit.objects.create(
        action=action, actor=actor[:200], customer_id=customer_id, at=timezone.now(), detail=detail or {}
    )


# --- Consent ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    customer_id: UUID
    choice: ConsentChoice
    changed_at: datetime
    origin: str
    actor: str
    source_id: UUID | None = None
    source_label: str = ""
    event_id: int | None = None


def consent_set(
    *,
    customer_id: UUID,
    choices: Sequence[ConsentChoice],
    origin: str,
    actor: str,
    changed_at: datetime | None = None,
    source_id: UUID | None = None,
    source_label: str = "",
) -> list[ConsentChange]:
    """Record consent choices for a customer (its live profile, if it was merged): appends the
    history, updates the current state when the choice is the latest, and audits API and admin
    changes. The channels' STOP/unsubscribe webhooks call this with origin "webhook"."""
    if origin not in ConsentOrigin.values:
        raise BadRequest(f"origin must be one of {ConsentOrigin.values}", code="invalid_consent")
    if not choices:
        raise BadRequest("no consent choices given", code="invalid_consent")
    now = timezone.now()
    when = changed_at or now
    if timezone.is_naive(when):
        raise BadRequest("changed_at needs a time zone", code="invalid_consent")
    if when > now + MAX_CLOCK_AHEAD:
        raise BadRequest("changed_at is in the future", code="invalid_consent")
    valid = [_checked(choice) for choice in choices]
    customer = customer_get(customer_id=customer_id)
    if customer is None:
        raise NotFound("no such customer")
    with transaction.atomic():
        changes = _record(
            [
                _Pending(
                    customer_id=customer.id,
                    choice=choice,
                    changed_at=when,
                    origin=origin,
                    actor=actor,
                    source_id=source_id,
                    source_label=source_label[:200],
                )
                for choice in valid
            ],
            now=now,
        )
        if origin in _AUDITED_ORIGINS:
            privacy_audit_record(
                action=PrivacyAction.CONSENT_SET,
                actor=actor,
                customer_id=customer.id,
                detail={
                    "changes": [{"purpose": c.purpose, "channel": c.channel, "status": c.status} for c in changes],
                    "origin": origin,
                    "source": source_label[:200],
                },
            )
    return changes


def _checked(choice: ConsentChoice) -> ConsentChoice:
    purpose = conventions.normalize_purpose(choice.purpose)
    channel = conventions.normalize_channel(choice.channel)
    status = conventions.normalize_status(choice.status)
    if purpose is None:
        raise BadRequest(f"invalid purpose {choice.purpose!r}", code="invalid_consent")
    if channel is None:
        raise BadRequest(f"invalid channel {choice.channel!r}", code="invalid_consent")
    if status is None:
        raise BadRequest(f"status must be granted or denied, not {choice.status!r}", code="invalid_consent")
    return ConsentChoice(purpose, channel, status)


def consent_apply_events(events: list[StoredEvent]) -> None:
    """Routing handler: record the consent carried by events (`context.consent` on any call, the
    `consent` trait of an identify). One query finds the events that carry any, in the
    routing transaction, so the consent commits with the routing of its event. Most chunks carry
    none, and the claim says so (StoredEvent.consent): they cost nothing here."""
    if not any(event.consent for event in events):
        return
    rows = list(
        Event.objects.filter(id__in=[e.id for e in events])
        .filter(Q(context__has_key="consent") | Q(type="identify", properties__has_key="consent"))
        .values_list("id", "customer_id", "source_id", "timestamp", "type", "context__consent", "properties__consent")
    )
    if not rows:
        return
    now = timezone.now()
    pending: dict[tuple[int, str, str], _Pending] = {}
    for event_id, customer_id, source_id, timestamp, kind, from_context, from_traits in sorted(rows):
        sources = [(ConsentOrigin.CONTEXT, from_context)]
        if kind == "identify":
            # After the context, so a trait naming the same purpose and channel wins: it is the
            # more deliberate of the two.
            sources.append((ConsentOrigin.IDENTIFY_TRAIT, from_traits))
        for origin, payload in sources:
            for choice in conventions.choices_from(payload):
                pending[(event_id, choice.purpose, choice.channel)] = _Pending(
                    customer_id=customer_id,
                    choice=choice,
                    changed_at=min(timestamp, now),
                    origin=origin,
                    actor="ingestion",
                    source_id=source_id,
                    event_id=event_id,
                )
    if pending:
        _record(list(pending.values()), now=now)


def _record(pending: list[_Pending], *, now: datetime) -> list[ConsentChange]:
    """Append the history rows worth keeping and move the current state forward, in the
    caller's transaction. The current state only ever moves to a later choice, whatever order
    choices arrive in, and that rule is enforced by the upsert itself, so concurrent writers
    cannot move it back."""
    event_ids = [p.event_id for p in pending if p.event_id is not None]
    if event_ids:
        # Routing runs an event once, but a replay must not fail on the unique constraint.
        seen = set(ConsentChange.objects.filter(event_id__in=event_ids).values_list("event_id", "purpose", "channel"))
        pending = [p for p in pending if (p.event_id, p.choice.purpose, p.choice.channel) not in seen]
    customer_ids = {p.customer_id for p in pending}
    _lock_consent_of(customer_ids)
    state: dict[tuple[UUID, str, str], tuple[str, datetime]] = {
        (c.customer_id, c.purpose, c.channel): (c.status, c.changed_at)
        for c in Consent.objects.filter(customer_id__in=customer_ids)
    }
    changes: list[ConsentChange] = []
    for p in sorted(pending, key=lambda p: p.changed_at):
        key = (p.customer_id, p.choice.purpose, p.choice.channel)
        current = state.get(key)
        if current is not None and p.origin not in _EXPLICIT_ORIGINS and current[0] == p.choice.status:
            continue
        applied = current is None or _supersedes(p.choice.status, p.changed_at, current)
        if applied:
            state[key] = (p.choice.status, p.changed_at)
        changes.append(
            ConsentChange(
                customer_id=p.customer_id,
                purpose=p.choice.purpose,
                channel=p.choice.channel,
                status=p.choice.status,
                changed_at=p.changed_at,
                recorded_at=now,
                origin=p.origin,
                source_id=p.source_id,
                source_label=p.source_label,
                actor=p.actor,
                event_id=p.event_id,
                applied=applied,
            )
        )
    if not changes:
        return []
    ConsentChange.objects.bulk_create(changes)
    latest: dict[tuple[UUID, str, str], ConsentChange] = {}
    for change in changes:
        if change.applied:
            latest[(change.customer_id, change.purpose, change.channel)] = change
    _upsert_current([latest[key] for key in sorted(latest, key=str)], now=now)
    return changes


def _lock_consent_of(customer_ids: set[UUID]) -> None:
    """Serialise consent writers of the same customers until commit, so each reads the state
    the one before it wrote and its history row says truly whether it was applied (two writers
    that both read no state would both record applied = true). Advisory locks in sorted order:
    a row lock cannot cover a consent row that does not exist yet."""
    if not customer_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('consent:' || c::text, 0)) "
            "FROM unnest(%s::uuid[]) AS c ORDER BY c",
            [sorted(customer_ids)],
        )


def _supersedes(status: str, changed_at: datetime, current: tuple[str, datetime]) -> bool:
    """Whether a choice replaces the current one: a later one does; at the same instant a
    denial does, and so does the same status again (an idempotent repeat), but a grant never
    replaces a denial. The upsert's WHERE is this rule in SQL."""
    current_status, current_at = current
    if changed_at != current_at:
        return changed_at > current_at
    return status in (conventions.DENIED, current_status)


def _upsert_current(changes: list[ConsentChange], *, now: datetime) -> None:
    if not changes:
        return
    table = Consent._meta.db_table
    customer_pk = Customer._meta.pk
    assert customer_pk is not None
    ops = connection.ops
    params: list[Any] = []
    for change in changes:
        params += [
            customer_pk.get_db_prep_value(change.customer_id, connection),
            change.purpose,
            change.channel,
            change.status,
            ops.adapt_datetimefield_value(change.changed_at),
            change.origin,
            change.id,
            ops.adapt_datetimefield_value(now),
        ]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(changes))
    # One statement for the whole batch: per (customer, purpose, channel), a later change
    # replaces the stored one; at the same instant a denial does, or the same status again.
    sql = (
        f"INSERT INTO {table} (customer_id, purpose, channel, status, changed_at, origin, change_id, updated_at) "  # noqa: S608 - table name from the model
        f"VALUES {values} "
        "ON CONFLICT (customer_id, purpose, channel) DO UPDATE SET status = excluded.status, "
        "changed_at = excluded.changed_at, origin = excluded.origin, change_id = excluded.change_id, "
        f"updated_at = excluded.updated_at WHERE {table}.changed_at < excluded.changed_at "
        f"OR ({table}.changed_at = excluded.changed_at "
        f"AND (excluded.status = %s OR {table}.status = excluded.status))"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, conventions.DENIED])


# --- Export -----------------------------------------------------------------------------------


def customer_export(*, customer_id: UUID, actor: str) -> Iterator[bytes]:
    """Audit an export of everything held about a customer and return the JSON document as a
    stream of chunks (see docs/privacy.md for its shape). Writes one PrivacyAudit row."""
    customer = customer_get(customer_id=customer_id)
    if customer is None:
        raise NotFound("no such customer")
    privacy_audit_record(
        action=PrivacyAction.EXPORT,
        actor=actor,
        customer_id=customer.id,
        detail={"requested_id": str(customer_id)} if customer.id != customer_id else {},
    )
    return selectors.customer_export_chunks(customer=customer)


# --- Erase ------------------------------------------------------------------------------------


def customer_erase(*, customer_id: UUID, suppress: bool, reason: str, actor: str) -> Erasure:
    """Delete everything held about the person behind `customer_id` (its live profile and every
    profile merged into it): events, identities, sessions, consent, merges, quarantined
    messages sent with their identifiers, and what other apps registered to delete; leave
    tombstones of their identifiers (suppressing later events if asked) and audit it. Erasing
    again, by any of the erased ids, returns the first erasure.

    Routing the person's events meanwhile can deadlock with it (routing holds the events'
    outbox rows and waits to lock the person; the erase holds the person and deletes those
    rows): the erase is then run again, as merges are, once routing has finished."""
    erasure, first_suppression = atomic_retrying(
        lambda: _erase_once(customer_id, suppress=suppress, reason=reason, actor=actor), what="an erase"
    )
    if first_suppression:
        # Ingestion processes trust "no suppression in force" for SUPPRESSION_CHECK_SECONDS
        # (selectors.suppression_may_apply); waiting that long after the commit means that once
        # this answers, every process sees the suppression. Only the first suppression waits:
        # with one in force, every process checks each batch.
        time.sleep(settings.SUPPRESSION_CHECK_SECONDS)
    return erasure


def _erase_once(customer_id: UUID, *, suppress: bool, reason: str, actor: str) -> tuple[Erasure, bool]:
    """customer_erase in the caller's transaction; and whether it put suppression in force."""
    done = selectors.erasure_for(customer_id=customer_id)
    cluster = [] if done else _lock_cluster(customer_id)
    if not done and not cluster:
        # Another erase of the same person may have finished while we waited for the locks.
        done = selectors.erasure_for(customer_id=customer_id)
    if done is not None:
        privacy_audit_record(
            action=PrivacyAction.ERASE,
            actor=actor,
            customer_id=customer_id,
            detail={"erasure_id": done.id, "repeat": True},
        )
        return done, False
    if not cluster:
        raise NotFound("no such customer")
    first_suppression = suppress and not selectors.suppression_in_force()
    erasure = _erase(cluster, requested=customer_id, suppress=suppress, reason=reason, actor=actor)
    privacy_audit_record(
        action=PrivacyAction.ERASE,
        actor=actor,
        customer_id=customer_id,
        detail={
            "erasure_id": erasure.id,
            "customer_ids": erasure.customer_ids,
            "suppress": suppress,
            "deleted": erasure.deleted,
        },
    )
    return erasure, first_suppression


def _lock_cluster(customer_id: UUID) -> list[UUID]:
    """Lock the person's profiles (live one first, then those merged into it) in id order, as
    merges lock them, and return their ids; [] when there is no such customer."""
    for _ in range(MAX_LOCK_ROUNDS):
        customer = customer_get(customer_id=customer_id)
        if customer is None:
            return []
        wanted = customer_member_ids(customer_id=customer.id)
        locked = list(
            Customer.objects.select_for_update().filter(id__in=wanted).order_by("id").values_list("id", "merged_into")
        )
        live = [cid for cid, merged_into in locked if merged_into is None]
        # A merge or unmerge may have moved the person's profiles before the lock was taken.
        if live == [customer.id] and customer_member_ids(customer_id=customer.id) == wanted:
            return wanted
    raise Conflict("the customer's profiles kept changing; try again", code="erase_contended")


def _erase(cluster: list[UUID], *, requested: UUID, suppress: bool, reason: str, actor: str) -> Erasure:
    now = timezone.now()
    identities = _identities_of(cluster)
    erasure = Erasure.objects.create(
        customer_id=requested,
        customer_ids=[str(c) for c in cluster],
        suppress=suppress,
        reason=reason,
        actor=actor[:200],
        erased_at=now,
    )
    ErasedCustomer.objects.bulk_create(ErasedCustomer(customer_id=c, erasure=erasure) for c in cluster)
    tombstones = _write_tombstones(identities, erasure=erasure, suppress=suppress, now=now)

    deleted: dict[str, int] = dict(contracts.notify_erased(cluster))
    deleted["profiles.QuarantinedMessage"] = _delete_quarantined(identities)
    deleted["profiles.MergeRefusal"] = _delete_refusals(cluster)
    deleted["profiles.Event"] = _delete_events(cluster)
    Customer.objects.filter(id__in=cluster).update(merged_into=None)
    try:
        _, by_model = Customer.objects.filter(id__in=cluster).delete()
    except ProtectedError as error:
        raise Conflict(
            f"the customer is still referenced by {error.protected_objects!r}", code="erase_blocked"
        ) from None
    for label, count in by_model.items():
        deleted[label] = deleted.get(label, 0) + count
    erasure.deleted = {"tombstones": tombstones, **{k: v for k, v in sorted(deleted.items()) if v}}
    erasure.save(update_fields=["deleted"])
    return erasure


def _identities_of(cluster: list[UUID]) -> set[IdentityKey]:
    """Every identifier the person's profiles hold, and those their merges recorded (which an
    unmerge could hand back)."""
    keys: set[IdentityKey] = set(Identity.objects.filter(customer_id__in=cluster).values_list("kind", "value"))
    for pairs in MergeRecord.objects.filter(Q(survivor_id__in=cluster) | Q(merged_id__in=cluster)).values_list(
        "identities", flat=True
    ):
        keys.update((str(kind), str(value)) for kind, value in pairs or ())
    return keys


def _write_tombstones(identities: set[IdentityKey], *, erasure: Erasure, suppress: bool, now: datetime) -> int:
    hashes = {selectors.identity_hash(key): key[0] for key in identities}
    if not hashes:
        return 0
    # An identifier erased before keeps the suppression it had: lifting one is its own act.
    suppressed = set(
        ErasureTombstone.objects.filter(key_hash__in=list(hashes), suppress=True).values_list("key_hash", flat=True)
    )
    ErasureTombstone.objects.bulk_create(
        [
            ErasureTombstone(
                key_hash=key_hash,
                kind=kind,
                erasure=erasure,
                suppress=suppress or key_hash in suppressed,
                created_at=now,
            )
            for key_hash, kind in hashes.items()
        ],
        update_conflicts=True,
        unique_fields=["key_hash"],
        update_fields=["erasure", "suppress", "created_at"],
    )
    return len(hashes)


def _delete_quarantined(identities: set[IdentityKey]) -> int:
    """Quarantined messages are not linked to a customer (they were never accepted): those whose
    userId, anonymousId, previousId, email or phone is one of the person's go. This scans the
    quarantine, which is acceptable for a rare request and keeps ingestion free of extra work."""
    ids = [value for kind, value in identities if kind in ("user_id", "anonymous_id")]
    emails = [value for kind, value in identities if kind == "email"]
    phones = {value for kind, value in identities if kind == "phone"}
    doomed: set[int] = set()
    if ids or emails:
        match = Q()
        if ids:
            match |= Q(raw__userId__in=ids) | Q(raw__anonymousId__in=ids) | Q(raw__previousId__in=ids)
        queryset = QuarantinedMessage.objects.all()
        if emails:
            queryset = queryset.annotate(
                _trait_email=Lower(KT("raw__traits__email")), _context_email=Lower(KT("raw__context__traits__email"))
            )
            match |= Q(_trait_email__in=emails) | Q(_context_email__in=emails)
        doomed.update(queryset.filter(match).values_list("id", flat=True))
    if phones:
        doomed.update(_quarantined_with_phone(phones))
    return QuarantinedMessage.objects.filter(id__in=doomed).delete()[0] if doomed else 0


def _quarantined_with_phone(phones: set[str]) -> list[int]:
    """Quarantined messages carrying one of these (E.164) phones. A phone is sent in any format
    ("(415) 555-0100", "+1 415 555 0100"), so each candidate is normalised as ingestion would
    before it is compared; only messages that carry a phone at all are read."""
    region = settings.DEFAULT_PHONE_REGION
    candidates = (
        QuarantinedMessage.objects.annotate(
            _trait_phone=KT("raw__traits__phone"), _context_phone=KT("raw__context__traits__phone")
        )
        .filter(Q(_trait_phone__isnull=False) | Q(_context_phone__isnull=False))
        .values_list("id", "_trait_phone", "_context_phone")
    )
    return [
        row_id
        for row_id, trait_phone, context_phone in candidates.iterator(chunk_size=2000)
        if any(raw is not None and normalize_phone(raw, region) in phones for raw in (trait_phone, context_phone))
    ]


def _delete_refusals(cluster: list[UUID]) -> int:
    names = {str(c) for c in cluster}
    match = Q()
    for name in names:
        match |= Q(customer_ids__contains=[name])
    return MergeRefusal.objects.filter(match).delete()[0]


def _delete_events(cluster: list[UUID]) -> int:
    """In chunks, fetching only ids: a profile can hold millions of events."""
    total = 0
    while True:
        chunk = list(Event.objects.filter(customer_id__in=cluster).values_list("id", flat=True)[:EVENT_DELETE_CHUNK])
        if not chunk:
            return total
        Event.objects.filter(id__in=chunk).only("id").delete()
        total += len(chunk)


def suppression_lift(*, kind: str, value: str, actor: str) -> bool:
    """Stop suppressing events with one identifier (the person came back and agreed to be known
    again). Returns whether it was suppressed; audits the lift under the erased customer."""
    key = selectors.normalized_identity(kind=kind, value=value)
    if key is None:
        raise BadRequest(f"not a valid {kind}", code="invalid_identity")
    with transaction.atomic():
        tombstone = (
            ErasureTombstone.objects.select_for_update()
            .select_related("erasure")
            .filter(key_hash=selectors.identity_hash(key), suppress=True)
            .first()
        )
        if tombstone is None:
            return False
        tombstone.suppress = False
        tombstone.save(update_fields=["suppress"])
        privacy_audit_record(
            action=PrivacyAction.SUPPRESSION_LIFT,
            actor=actor,
            customer_id=tombstone.erasure.customer_id,
            detail={"erasure_id": tombstone.erasure_id, "kind": tombstone.kind},
        )
    return True
