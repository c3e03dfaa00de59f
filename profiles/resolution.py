"""Identity resolution: which customer each message of a batch belongs to.

Creates customers and identities as needed and merges the profiles a message shows to be one
person, within the identity limits (profiles/merging.py); writes through the ingestion store.
"""

import uuid
from datetime import datetime

from profiles import trait_ops
from profiles.contracts import SourceInfo
from profiles.identifiers import IdentityKey
from profiles.ingest_store import Held, IngestStore
from profiles.merging import (
    MergeRequest,
    customers_locked_for_writing,
    customers_merge,
    identities_onto_survivors,
    identity_limits,
)
from profiles.messages import Message
from profiles.models import MergeRefusal


def _lookup_keys(messages: list[Message]) -> set[IdentityKey]:
    keys: set[IdentityKey] = set()
    for message in messages:
        keys.update(message.identities)
        if message.previous_id:
            keys.add(("user_id", message.previous_id))
            keys.add(("anonymous_id", message.previous_id))
    return keys


EXPLICIT_ALIAS_REASON = "explicit merge: an alias call joined previousId to userId"


def customers_resolve(store: IngestStore, source: SourceInfo, messages: list[Message], now: datetime) -> None:
    """Assign every message a customer, creating customers and identities as needed and merging
    the profiles a message shows to be one person.

    Messages are taken in order, so an anonymous page view followed by an identify in the same
    batch lands on one profile. A merge that identity rules refuse leaves the profiles apart,
    and the message goes to the owner of its strongest identity (user id first).
    """
    limits = identity_limits()
    wanted = _lookup_keys(messages)
    # The limited-kind identities (e.g. user ids) the known customers hold come with the lookup,
    # in the same round trip, when the batch carries such a kind at all.
    owners, held = store.lookup(wanted, sorted({kind for kind, _ in wanted if kind in limits}))
    refusals: list[MergeRefusal] = []
    new_customers: set[uuid.UUID] = set()
    new_identities: dict[IdentityKey, uuid.UUID] = {}
    ops: dict[uuid.UUID, trait_ops.TraitOps] = {}
    merges: list[tuple[list[uuid.UUID], Message]] = []

    for message in messages:
        keys = _message_keys(message, owners)
        known = list(dict.fromkeys(owners[key] for key in keys if key in owners))
        # alias is the caller's explicit instruction to join two identities (the Segment spec),
        # so the one-user-id limit, which guards against implicit joins, does not apply to it.
        if (
            len(known) == 1
            and message.type != "alias"
            and (problem := _over_limit(held, known[0], keys, owners, limits))
        ):
            # e.g. a second user id arriving on a shared device's profile: the person behind the
            # strong identity gets a profile of their own; the shared identity stays where it is.
            refusals.append(_refusal(source, message, known, problem))
            keys = [key for key in keys if key not in owners]
            known = []
        customer_id = _customer_for(message, known, merges, new_customers)
        for key in keys:
            if key not in owners:
                owners[key] = customer_id
                new_identities[key] = customer_id
        _hold(held, customer_id, keys, limits)
        message.customer_id = customer_id
        if message.traits:
            _add_traits(ops, customer_id, message)

    customers = {cid: trait_ops.apply({}, {}, [], ops.pop(cid, trait_ops.TraitOps())) for cid in new_customers}
    if new_identities:
        # Only these inserts can collide with a concurrent request: a collision undoes them and
        # raises IdentityConflict, so the caller resolves again; everything before it only read.
        store.insert_new(customers, new_identities, source, now)
    elif customers:
        store.insert_customers(customers, now)
    if refusals:
        MergeRefusal.objects.bulk_create(refusals)
    survivor_of = _merge(source, merges)
    # A concurrent merge may have taken one of these profiles away since the lookup: from here
    # on they are locked, and what was merged away is written to its survivor.
    locked = customers_locked_for_writing(customer_ids={m.customer_id for m in messages})
    moved = {cid: survivor for cid, survivor in locked.items() if cid not in survivor_of}
    if moved:
        identities_onto_survivors(survivor_of={cid: _follow(moved, cid) for cid in moved})
        survivor_of.update(moved)
    if survivor_of:
        ops = _onto_survivors(survivor_of, messages, ops)
    if ops:
        store.merge_traits(ops, now)


def _message_keys(message: Message, owners: dict[IdentityKey, uuid.UUID]) -> list[IdentityKey]:
    """The message's identities, and its alias's previousId (a known user id first, else an
    anonymous id)."""
    keys = list(message.identities)
    if message.previous_id:
        candidates = (("user_id", message.previous_id), ("anonymous_id", message.previous_id))
        keys.append(next((key for key in candidates if key in owners), candidates[1]))
    return keys


def _customer_for(
    message: Message,
    known: list[uuid.UUID],
    merges: list[tuple[list[uuid.UUID], Message]],
    new_customers: set[uuid.UUID],
) -> uuid.UUID:
    """The first known customer (the others merge into one with it), or a new one."""
    if not known:
        customer_id = uuid.uuid4()
        new_customers.add(customer_id)
        return customer_id
    if len(known) > 1:
        merges.append((known, message))
    return known[0]


def _add_traits(ops: dict[uuid.UUID, trait_ops.TraitOps], customer_id: uuid.UUID, message: Message) -> None:
    """Fold the message's trait operations into the customer's, stamped with its time."""
    message_ops = trait_ops.parse(message.traits or {})
    message_ops.set_at = message.timestamp.isoformat()
    ops[customer_id] = trait_ops.fold(ops[customer_id], message_ops) if customer_id in ops else message_ops


def _hold(held: Held, customer_id: uuid.UUID, keys: list[IdentityKey], limits: dict[str, int]) -> None:
    """Count the limited-kind identities the customer now holds (the next messages' limit)."""
    for kind, value in keys:
        if kind in limits:
            held.setdefault(customer_id, {}).setdefault(kind, set()).add(value)


def _onto_survivors(
    survivor_of: dict[uuid.UUID, uuid.UUID], messages: list[Message], ops: dict[uuid.UUID, trait_ops.TraitOps]
) -> dict[uuid.UUID, trait_ops.TraitOps]:
    """Point the messages at the profiles their customers merged into, and fold the trait
    operations meant for merged profiles into their survivors'."""
    for message in messages:
        message.customer_id = _follow(survivor_of, message.customer_id)
    folded: dict[uuid.UUID, trait_ops.TraitOps] = {}
    for customer_id, customer_ops in ops.items():
        target = _follow(survivor_of, customer_id)
        folded[target] = trait_ops.fold(folded[target], customer_ops) if target in folded else customer_ops
    return folded


def _over_limit(
    held: dict[uuid.UUID, dict[str, set[str]]],
    customer_id: uuid.UUID,
    keys: list[IdentityKey],
    owners: dict[IdentityKey, uuid.UUID],
    limits: dict[str, int],
) -> str:
    for kind, value in keys:
        if kind in limits and (kind, value) not in owners:
            values = held.get(customer_id, {}).get(kind, set()) | {value}
            if len(values) > limits[kind]:
                return f"the profile would hold {len(values)} {kind} identities; the limit is {limits[kind]}"
    return ""


def _refusal(source: SourceInfo, message: Message, customer_ids: list[uuid.UUID], reason: str) -> MergeRefusal:
    return MergeRefusal(
        customer_ids=[str(cid) for cid in customer_ids],
        reason=reason,
        actor="ingestion",
        trigger={"source": str(source.id), "message_id": message.message_id},
    )


def _merge(source: SourceInfo, merges: list[tuple[list[uuid.UUID], Message]]) -> dict[uuid.UUID, uuid.UUID]:
    """Merge every group of profiles a message tied together, in message order and all at once
    (one merge at a time cost a dozen statements each, the largest share of a batch's work);
    map merged ids to survivors."""
    if not merges:
        return {}
    outcomes = customers_merge(
        requests=[
            MergeRequest(
                customer_ids=customer_ids,
                reason=EXPLICIT_ALIAS_REASON
                if message.type == "alias"
                else f"identities seen together in one {message.type} call",
                trigger={"source": str(source.id), "message_id": message.message_id},
                explicit=message.type == "alias",
            )
            for customer_ids, message in merges
        ],
        actor="ingestion",
    )
    survivor_of: dict[uuid.UUID, uuid.UUID] = {}
    for outcome in outcomes:
        if outcome.survivor_id is not None:
            for merged_id in outcome.merged_ids:
                survivor_of[merged_id] = outcome.survivor_id
    return survivor_of


def _follow(survivor_of: dict[uuid.UUID, uuid.UUID], customer_id: uuid.UUID) -> uuid.UUID:
    seen = {customer_id}
    while customer_id in survivor_of and survivor_of[customer_id] not in seen:
        customer_id = survivor_of[customer_id]
        seen.add(customer_id)
    return customer_id
