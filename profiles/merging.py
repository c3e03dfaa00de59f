"""Merging customers that turn out to be one person, and undoing it.

A merge keeps the oldest profile; the others point at it (`merged_into`, always the final
survivor, so one hop resolves any old id), and their identities and events move to it. Sessions
(orchestration's) stay on the profile they began on and are found through the survivor's cluster,
so an unmerge needs to give nothing back.
Rows are locked in id order, so two merges of overlapping profiles serialise instead of racing;
a deadlock between them (possible when one follows `merged_into` to a row the other holds) is
retried. Rules in `identity_rules` refuse merges that would join two known users.
"""

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from config.core.errors import ApplicationError, NotFound
from profiles import contracts, identity_rules
from profiles.computed_traits import computed_states_merged
from profiles.models import Customer, Event, Identity, MergeBlock, MergeRecord, MergeRefusal

logger = logging.getLogger(__name__)

MAX_LOCK_ROUNDS = 5
DEADLOCK_RETRIES = 3


class MergeRefused(ApplicationError):
    status_code = 409
    code = "merge_refused"


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    survivor_id: UUID | None
    merged_ids: list[UUID] = field(default_factory=list)
    refused: str = ""


def identity_limits() -> dict[str, int]:
    return dict(getattr(settings, "IDENTITY_LIMITS", identity_rules.DEFAULT_LIMITS))


def customer_merge(
    *, customer_ids: Collection[UUID], reason: str, actor: str, trigger: dict[str, Any] | None = None
) -> MergeOutcome:
    """Merge the live profiles behind `customer_ids` into the oldest. Writes MergeRecords, or a
    MergeRefusal when a rule forbids it; re-points identities and events."""
    if connection.in_atomic_block:
        return _merge(set(customer_ids), reason, actor, trigger or {})
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with transaction.atomic():
                return _merge(set(customer_ids), reason, actor, trigger or {})
        except OperationalError as error:
            if "deadlock" not in str(error) or attempt == DEADLOCK_RETRIES - 1:
                raise
            logger.info("merge deadlocked with another merge; retrying")
    raise AssertionError("unreachable")


def _lock_live(ids: set[UUID]) -> list[Customer]:
    """Lock the profiles and the survivors they were merged into; return the live ones."""
    wanted = set(ids)
    for _ in range(MAX_LOCK_ROUNDS):
        rows = list(Customer.objects.select_for_update().filter(id__in=wanted).order_by("id"))
        targets = {row.merged_into_id for row in rows if row.merged_into_id is not None}
        if targets <= wanted:
            return [row for row in rows if row.merged_into_id is None]
        wanted |= targets
    raise OperationalError("merge chain did not settle while locking")


def _merge(ids: set[UUID], reason: str, actor: str, trigger: dict[str, Any]) -> MergeOutcome:
    live = _lock_live(ids)
    if len(live) < 2:
        return MergeOutcome(survivor_id=live[0].id if live else None)
    live.sort(key=lambda c: (c.created_at, c.id))
    survivor, losers = live[0], live[1:]
    live_ids = [c.id for c in live]

    identities = list(Identity.objects.filter(customer_id__in=live_ids).values_list("kind", "value", "customer_id"))
    problems = identity_rules.limit_violations(((k, v) for k, v, _ in identities), identity_limits())
    blocked = MergeBlock.objects.filter(customer_a_id__in=live_ids, customer_b_id__in=live_ids).exists()
    if blocked:
        problems.append("these profiles were separated by an unmerge")
    if problems:
        refusal = "; ".join(problems)
        MergeRefusal.objects.create(
            customer_ids=[str(i) for i in live_ids], reason=refusal, actor=actor, trigger=trigger
        )
        return MergeOutcome(survivor_id=None, refused=refusal)

    traits, times, once = identity_rules.merge_traits([(c.traits, c.trait_times, c.once_keys) for c in live])
    computed_state = computed_states_merged([c.computed_state for c in live])
    loser_ids = [c.id for c in losers]
    MergeRecord.objects.bulk_create(
        MergeRecord(
            survivor=survivor,
            merged=loser,
            reason=reason,
            actor=actor,
            trigger=trigger,
            identities=[[k, v] for k, v, owner in identities if owner == loser.id],
            traits_before=loser.traits,
        )
        for loser in losers
    )
    now = timezone.now()
    Identity.objects.filter(customer_id__in=loser_ids).update(customer=survivor, updated_at=now)
    Event.objects.filter(customer_id__in=loser_ids).update(customer=survivor)
    # Keep merged_into one hop: whatever pointed at a loser now points at the survivor.
    Customer.objects.filter(Q(id__in=loser_ids) | Q(merged_into_id__in=loser_ids)).update(
        merged_into=survivor, updated_at=now
    )
    Customer.objects.filter(id=survivor.id).update(
        traits=traits, trait_times=times, once_keys=once, computed_state=computed_state, updated_at=now
    )
    contracts.notify_merged(survivor.id, loser_ids)
    return MergeOutcome(survivor_id=survivor.id, merged_ids=loser_ids)


def customer_unmerge(*, record_id: int, actor: str) -> Customer:
    """Undo a merge: the merged profile gets back its identities, the events sent with
    its user and anonymous ids, and its traits as they were; the two are not merged again
    automatically. Undoing twice is a no-op."""
    with transaction.atomic():
        record = MergeRecord.objects.select_for_update().filter(id=record_id).first()
        if record is None:
            raise NotFound("no such merge")
        pair = sorted([record.survivor_id, record.merged_id])
        list(Customer.objects.select_for_update().filter(id__in=pair).order_by("id"))
        merged = Customer.objects.get(id=record.merged_id)
        if record.undone_at is not None:
            return merged
        owner = merged.merged_into_id
        keys = [(kind, value) for kind, value in record.identities]
        identity_q = Q()
        for kind, value in keys:
            identity_q |= Q(kind=kind, value=value)
        now = timezone.now()
        if keys and owner is not None:
            Identity.objects.filter(identity_q, customer_id=owner).update(customer=merged, updated_at=now)
        user_ids = [v for k, v in keys if k == "user_id"]
        anonymous_ids = [v for k, v in keys if k == "anonymous_id"]
        if owner is not None and (user_ids or anonymous_ids):
            Event.objects.filter(Q(user_id__in=user_ids) | Q(anonymous_id__in=anonymous_ids), customer_id=owner).update(
                customer=merged
            )
        Customer.objects.filter(id=merged.id).update(merged_into=None, traits=record.traits_before, updated_at=now)
        MergeBlock.objects.get_or_create(customer_a_id=pair[0], customer_b_id=pair[1])
        record.undone_at = now
        record.undone_by = actor
        record.save(update_fields=["undone_at", "undone_by", "updated_at"])
        merged.refresh_from_db()
        return merged
