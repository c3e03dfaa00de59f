"""Merging customers that turn out to be one person, and undoing it.

A merge keeps the oldest profile; the others point at it (`merged_into`, always the final
survivor, so one hop resolves any old id), and their identities and events move to it. Sessions
(orchestration's) stay on the profile they began on and are found through the survivor's cluster,
so an unmerge needs to give nothing back.
Rows are locked in id order, so two merges of overlapping profiles serialise instead of racing;
a deadlock between them (possible when one follows `merged_into` to a row the other holds) is
retried. Rules in `identity_rules` refuse merges that would join two known users, unless the
merge is explicit (an alias call): then it is recorded as such (`trigger.explicit`), and undone
like any other.
"""

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from config.core.errors import ApplicationError, NotFound
from config.core.transactions import atomic_retrying
from profiles import contracts, identity_rules
from profiles.computed_traits import computed_states_merged, computed_states_unmerged
from profiles.models import Customer, Event, Identity, MergeBlock, MergeRecord, MergeRefusal

MAX_LOCK_ROUNDS = 5


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


@dataclass(frozen=True, slots=True)
class MergeRequest:
    """Profiles one piece of evidence ties together, and why."""

    customer_ids: Collection[UUID]
    reason: str
    trigger: dict[str, Any] = field(default_factory=dict)
    # The caller said these are one person (an alias call, an operator): the identity limits,
    # which keep implicit evidence (a shared device) from joining two known users, do not apply.
    # A separation by an unmerge still does: undoing a merge is the later, deliberate word.
    explicit: bool = False


def customer_merge(
    *, customer_ids: Collection[UUID], reason: str, actor: str, trigger: dict[str, Any] | None = None
) -> MergeOutcome:
    """Merge the live profiles behind `customer_ids` into the oldest. Writes MergeRecords, or a
    MergeRefusal when a rule forbids it; re-points identities and events."""
    request = MergeRequest(customer_ids=customer_ids, reason=reason, trigger=trigger or {})
    return customers_merge(requests=[request], actor=actor)[0]


def customers_merge(*, requests: Sequence[MergeRequest], actor: str) -> list[MergeOutcome]:
    """Apply the merges in order, as customer_merge would one after another (a later one may
    merge an earlier one's survivor), with the same few statements however many there are:
    ingestion merges every group a batch ties together at once. Writes MergeRecords and
    MergeRefusals; re-points identities and events."""
    return atomic_retrying(lambda: _merge_all(requests, actor), what="a merge")


def _lock_live(ids: set[UUID]) -> dict[UUID, Customer]:
    """Lock the profiles and the survivors they were merged into; map each found id to its
    live profile."""
    wanted = set(ids)
    for _ in range(MAX_LOCK_ROUNDS):
        rows = {row.id: row for row in Customer.objects.select_for_update().filter(id__in=wanted).order_by("id")}
        targets = {row.merged_into_id for row in rows.values() if row.merged_into_id is not None}
        if targets <= wanted:
            return {
                cid: rows[row.merged_into_id] if row.merged_into_id is not None else row
                for cid, row in rows.items()
                if row.merged_into_id is None or row.merged_into_id in rows
            }
        wanted |= targets
    raise OperationalError("merge chain did not settle while locking")


def _merge_all(requests: Sequence[MergeRequest], actor: str) -> list[MergeOutcome]:
    live_of = _lock_live({cid for request in requests for cid in request.customer_ids})
    if not live_of:
        return [MergeOutcome(survivor_id=None) for _ in requests]
    profiles = {c.id: c for c in live_of.values()}
    identities: dict[UUID, list[tuple[str, str]]] = {cid: [] for cid in profiles}
    for kind, value, owner in Identity.objects.filter(customer_id__in=list(profiles)).values_list(
        "kind", "value", "customer_id"
    ):
        identities[owner].append((kind, value))
    blocks = {
        frozenset(pair)
        for pair in MergeBlock.objects.filter(customer_a_id__in=list(profiles), customer_b_id__in=list(profiles))
        .values_list("customer_a_id", "customer_b_id")
        .iterator()
    }
    limits = identity_limits()
    survivor_of: dict[UUID, UUID] = {}  # merged in this call -> its survivor (one step)

    def current(cid: UUID) -> UUID:
        while cid in survivor_of:
            cid = survivor_of[cid]
        return cid

    outcomes: list[MergeOutcome] = []
    records: list[MergeRecord] = []
    refusals: list[MergeRefusal] = []
    for request in requests:
        live_ids = sorted(
            {current(live_of[cid].id) for cid in request.customer_ids if cid in live_of},
            key=lambda cid: (profiles[cid].created_at, cid),
        )
        if len(live_ids) < 2:
            outcomes.append(MergeOutcome(survivor_id=live_ids[0] if live_ids else None))
            continue
        problems = (
            []
            if request.explicit
            else identity_rules.limit_violations((key for cid in live_ids for key in identities[cid]), limits)
        )
        if any(frozenset((a, b)) in blocks for i, a in enumerate(live_ids) for b in live_ids[i + 1 :]):
            problems.append("these profiles were separated by an unmerge")
        if problems:
            refusal = "; ".join(problems)
            refusals.append(
                MergeRefusal(
                    customer_ids=[str(i) for i in live_ids], reason=refusal, actor=actor, trigger=request.trigger
                )
            )
            outcomes.append(MergeOutcome(survivor_id=None, refused=refusal))
            continue
        live = [profiles[cid] for cid in live_ids]
        survivor, losers = live[0], live[1:]
        before = (survivor.traits, survivor.trait_times, survivor.once_keys)
        merged = identity_rules.merge_traits([(c.traits, c.trait_times, c.once_keys) for c in live])
        records.extend(
            MergeRecord(
                survivor=survivor,
                merged=loser,
                reason=request.reason,
                actor=actor,
                trigger={**request.trigger, "explicit": True} if request.explicit else request.trigger,
                identities=[[k, v] for k, v in identities[loser.id]],
                traits_before=loser.traits,
                moved=_moved(survivor, loser, before, merged),
            )
            for loser in losers
        )
        survivor.traits, survivor.trait_times, survivor.once_keys = merged
        survivor.computed_state = computed_states_merged([c.computed_state for c in live])
        for loser in losers:
            survivor_of[loser.id] = survivor.id
            identities[survivor.id].extend(identities.pop(loser.id))
        outcomes.append(MergeOutcome(survivor_id=survivor.id, merged_ids=[c.id for c in losers]))

    if refusals:
        MergeRefusal.objects.bulk_create(refusals)
    if records:
        _apply(records, {loser: current(loser) for loser in survivor_of})
    return outcomes


def _moved(
    survivor: Customer, loser: Customer, before: identity_rules.TraitState, merged: identity_rules.TraitState
) -> dict[str, Any]:
    """What an undo of this loser's merge gives back to each profile (MergeRecord.moved)."""
    return {
        "loser": {"trait_times": loser.trait_times, "once_keys": loser.once_keys, "computed": loser.computed_state},
        "survivor": {
            "traits_taken": identity_rules.traits_taken(
                before, (loser.traits, loser.trait_times, loser.once_keys), merged
            ),
            "once_keys": before[2],
            "computed": survivor.computed_state,
        },
    }


def _apply(records: list[MergeRecord], final: dict[UUID, UUID]) -> None:
    """Write the merges decided in memory: each merged-away profile (and whatever pointed at
    it) points at its final survivor, its identities and events move there, and every profile
    that survived a merge here gets its merged state (one that a later merge took away too, as
    merging one call at a time leaves it)."""
    MergeRecord.objects.bulk_create(records)
    now = timezone.now()
    survivors = list({record.survivor_id: record.survivor for record in records}.values())
    _apply_sets(final, survivors, now)
    by_survivor: dict[UUID, list[UUID]] = {}
    for loser, survivor_id in final.items():
        by_survivor.setdefault(survivor_id, []).append(loser)
    contracts.notify_merged(by_survivor)


# One statement per table for all the merges of a call. Django's Case/When and bulk_update
# cost more Python than the merges they wrote (ingestion merges several groups per batch). The
# ids come again as an array so each table is reached through its index on them: the planner
# cannot see how many rows the JSON holds.
_MOVE_IDENTITIES = """
    UPDATE profiles_identity AS i SET customer_id = m.survivor, updated_at = %s
    FROM json_to_recordset(%s::json) AS m(loser uuid, survivor uuid)
    WHERE i.customer_id = m.loser AND i.customer_id = ANY(%s::uuid[])
"""
_MOVE_EVENTS = """
    UPDATE profiles_event AS e SET customer_id = m.survivor
    FROM json_to_recordset(%s::json) AS m(loser uuid, survivor uuid)
    WHERE e.customer_id = m.loser AND e.customer_id = ANY(%s::uuid[])
"""
# merged_into stays one hop: the losers, and whatever pointed at them, point at the survivor.
_POINT_AT_SURVIVORS = """
    UPDATE profiles_customer AS c SET merged_into_id = m.survivor, updated_at = %s
    FROM json_to_recordset(%s::json) AS m(loser uuid, survivor uuid)
    WHERE COALESCE(c.merged_into_id, c.id) = m.loser AND (c.id = ANY(%s::uuid[]) OR c.merged_into_id = ANY(%s::uuid[]))
"""
_SET_MERGED_STATE = """
    UPDATE profiles_customer AS c SET traits = u.traits, trait_times = u.times, once_keys = u.once,
        computed_state = u.computed, updated_at = %s
    FROM json_to_recordset(%s::json) AS u(id uuid, traits jsonb, times jsonb, once jsonb, computed jsonb)
    WHERE c.id = u.id AND c.id = ANY(%s::uuid[])
"""


def _apply_sets(final: dict[UUID, UUID], survivors: list[Customer], now: datetime) -> None:
    pairs = orjson.dumps([{"loser": loser, "survivor": survivor} for loser, survivor in final.items()]).decode()
    losers = list(final)
    # json, as JSONField itself writes: traits set through the API may hold what orjson refuses
    # (integers over 64 bits).
    states = json.dumps(
        [
            {
                "id": c.id,
                "traits": c.traits,
                "times": c.trait_times,
                "once": c.once_keys,
                "computed": c.computed_state,
            }
            for c in survivors
        ],
        cls=DjangoJSONEncoder,
    )
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_IDENTITIES, [now, pairs, losers])
        cursor.execute(_MOVE_EVENTS, [pairs, losers])
        cursor.execute(_POINT_AT_SURVIVORS, [now, pairs, losers, losers])
        cursor.execute(_SET_MERGED_STATE, [now, states, [c.id for c in survivors]])


# FOR KEY SHARE: the lock the events' and identities' foreign keys take on the customer row at
# commit anyway, and the one a merge's FOR UPDATE (_lock_live) waits for.
_LOCK_FOR_WRITING = (
    "SELECT id, merged_into_id FROM profiles_customer WHERE id = ANY(%s::uuid[]) ORDER BY id FOR KEY SHARE"
)


def customers_locked_for_writing(*, customer_ids: Collection[UUID]) -> dict[UUID, UUID]:
    """Lock the profiles a writer is about to write rows for (events, identities, traits) until
    its commit, and map each that a merge has taken away to its survivor (locked too). Writes
    nothing.

    A merge moves the rows it can see, so a row written for a profile while a merge takes it
    away, and committed after the merge read, would stay on the merged-away profile. With this
    lock taken before the write, either the merge came first (the lock waits for its commit and
    then reads where it went) or the writer did (the merge waits for the writer's commit, and
    then sees and moves its rows)."""
    moved: dict[UUID, UUID] = {}
    locked: set[UUID] = set()
    wanted = set(customer_ids)
    for _ in range(MAX_LOCK_ROUNDS):
        if not wanted:
            return moved
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_FOR_WRITING, [sorted(wanted)])
            rows = cursor.fetchall()
        locked |= wanted
        found = {cid: merged_into for cid, merged_into in rows if merged_into is not None}
        moved.update(found)
        # A survivor may itself have been merged away since: lock it too, and follow it.
        wanted = set(found.values()) - locked
    raise OperationalError("merge chain did not settle while locking for writing")


def identities_onto_survivors(*, survivor_of: dict[UUID, UUID]) -> None:
    """Identities still on a merged-away profile (a writer added them while a merge took it
    away) join its survivor, as the merge would have moved them."""
    if not survivor_of:
        return
    pairs = orjson.dumps([{"loser": loser, "survivor": survivor} for loser, survivor in survivor_of.items()]).decode()
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_IDENTITIES, [timezone.now(), pairs, list(survivor_of)])


def customer_unmerge(*, record_id: int, actor: str) -> Customer:
    """Undo a merge: the merged profile gets back its identities, the events sent with its user
    and anonymous ids, and its traits and computed traits as they were; the profile it was
    merged into gives back what it took (see _give_back); the two are not merged again
    automatically. Undoing twice is a no-op."""
    with transaction.atomic():
        record = MergeRecord.objects.select_for_update().filter(id=record_id).first()
        if record is None:
            raise NotFound("no such merge")
        # The profile holding the merged one's rows now: its survivor, or where a later merge
        # took that survivor. Locked with the pair, in id order, as merges lock.
        holder = Customer.objects.filter(id=record.merged_id).values_list("merged_into_id", flat=True).first()
        pair = sorted({record.survivor_id, record.merged_id} | ({holder} if holder else set()))
        list(Customer.objects.select_for_update().filter(id__in=pair).order_by("id"))
        merged = Customer.objects.get(id=record.merged_id)
        if record.undone_at is not None:
            return merged
        owner = merged.merged_into_id
        if owner is not None and owner not in pair:
            raise OperationalError("the merged profile moved while its undo was locking")
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
        if owner is not None and record.moved:
            _give_back(Customer.objects.get(id=owner), record, now)
        loser = record.moved.get("loser", {})
        Customer.objects.filter(id=merged.id).update(
            merged_into=None,
            traits=record.traits_before,
            trait_times=loser.get("trait_times", merged.trait_times),
            once_keys=loser.get("once_keys", merged.once_keys),
            computed_state=loser.get("computed", merged.computed_state),
            updated_at=now,
        )
        block = sorted([record.survivor_id, record.merged_id])
        MergeBlock.objects.get_or_create(customer_a_id=block[0], customer_b_id=block[1])
        record.undone_at = now
        record.undone_by = actor
        record.save(update_fields=["undone_at", "undone_by", "updated_at"])
        merged.refresh_from_db()
        return merged


def _give_back(holder: Customer, record: MergeRecord, now: datetime) -> None:
    """The profile that holds the merged one's state gives back what the merge took: traits
    whose value is still the merged profile's return to the survivor's own (or go, if it had
    none), once-keys only the merged profile brought go, and computed traits stop counting the
    merged profile's events. What was set on it after the merge stays."""
    survivor = record.moved["survivor"]
    loser = record.moved["loser"]
    holder.traits, holder.trait_times, holder.once_keys = identity_rules.unmerge_traits(
        (holder.traits, holder.trait_times, holder.once_keys),
        (record.traits_before, loser["trait_times"], loser["once_keys"]),
        survivor["traits_taken"],
        survivor["once_keys"],
    )
    holder.computed_state = computed_states_unmerged(holder.computed_state, loser["computed"], survivor["computed"])
    holder.updated_at = now
    holder.save(update_fields=["traits", "trait_times", "once_keys", "computed_state", "updated_at"])
