"""Computed traits on profiles: definitions, the routing handler that updates them, reads.

The handler runs inside the routing transaction (orchestration registers it), so a routed
event updates each computed trait exactly once, and ingestion does no extra work for them.
"""

import time
from collections.abc import Mapping
from datetime import date
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.utils import timezone

from profiles import computed
from profiles.contracts import StoredEvent
from profiles.models import ComputedTrait, Customer, Event

_CACHE_SECONDS = 5.0
_cache: tuple[float, list[computed.Definition]] = (0.0, [])


def definitions() -> list[computed.Definition]:
    """Enabled definitions, cached per process for a few seconds."""
    global _cache  # noqa: PLW0603 - a per-process cache
    loaded_at, cached = _cache
    if time.monotonic() - loaded_at < _CACHE_SECONDS:
        return cached
    fresh = [_definition(row) for row in ComputedTrait.objects.filter(enabled=True)]
    _cache = (time.monotonic(), fresh)
    return fresh


def definitions_changed() -> None:
    global _cache  # noqa: PLW0603 - a per-process cache
    _cache = (0.0, [])


def _definition(row: ComputedTrait) -> computed.Definition:
    return computed.Definition(
        name=row.name,
        kind=row.kind,
        event_name=row.event_name,
        property=row.property,
        where=tuple(sorted((row.where or {}).items())),
        window_days=row.window_days,
    )


def computed_trait_create(
    *,
    name: str,
    kind: str,
    event_name: str,
    property: str = "",
    where: dict[str, Any] | None = None,
    window_days: int | None = None,
) -> ComputedTrait:
    """Define a computed trait; it counts events routed from now on."""
    row = ComputedTrait(
        name=name, kind=kind, event_name=event_name, property=property, where=where or {}, window_days=window_days
    )
    if kind in ("sum", "last_value") and not property:
        raise ValidationError({"property": f"a {kind} trait needs a property"})
    row.full_clean()
    row.save()
    definitions_changed()
    return row


def computed_traits_on_routed(events: list[StoredEvent]) -> None:
    """Update every customer's computed traits for these routed events, in one lock and one
    write per customer touched."""
    defs = definitions()
    names = {d.event_name for d in defs}
    relevant = [e for e in events if e.type == "track" and e.name in names]
    if not relevant:
        return
    properties = dict(Event.objects.filter(id__in=[e.id for e in relevant]).values_list("id", "properties"))
    by_customer: dict[UUID, list[computed.Occurrence]] = {}
    for event in sorted(relevant, key=lambda e: e.timestamp):
        occurrence = computed.Occurrence(event.name, event.timestamp, event.channel, properties.get(event.id) or {})
        by_customer.setdefault(event.customer_id, []).append(occurrence)
    customers = _lock_live(set(by_customer))
    today = timezone.now().date()
    changed = []
    for customer_id, occurrences in by_customer.items():
        customer = customers[customer_id]
        state = dict(customer.computed_state)
        for definition in defs:
            trait_state = state.get(definition.name)
            for occurrence in occurrences:
                if computed.matches(definition, occurrence):
                    trait_state = computed.apply(definition, trait_state, occurrence)
            if trait_state is not None:
                state[definition.name] = computed.prune(definition, trait_state, today)
        customer.computed_state = state
        changed.append(customer)
    Customer.objects.bulk_update({c.id: c for c in changed}.values(), ["computed_state"])


def _lock_live(ids: set[UUID]) -> dict[UUID, Customer]:
    """Lock the customers (id order) and map each id to its live profile."""
    rows = {c.id: c for c in Customer.objects.select_for_update().filter(id__in=ids).order_by("id")}
    targets = {c.merged_into_id for c in rows.values() if c.merged_into_id is not None} - set(rows)
    if targets:
        rows |= {c.id: c for c in Customer.objects.select_for_update().filter(id__in=targets).order_by("id")}
    live: dict[UUID, Customer] = {}
    for cid in ids:
        target = rows[cid].merged_into_id
        live[cid] = rows[target] if target is not None else rows[cid]
    return live


def computed_traits_of(customer: Customer, today: date | None = None) -> dict[str, Any]:
    return computed_traits_from_state(customer.computed_state, today)


def computed_traits_from_state(state: Mapping[str, Any], today: date | None = None) -> dict[str, Any]:
    """The computed traits of a profile whose `computed_state` this is."""
    today = today or timezone.now().date()
    return {d.name: computed.value(d, state.get(d.name), today) for d in definitions()}


def computed_states_merged(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One state per trait for profiles being merged into one."""
    merged: dict[str, Any] = {}
    for definition in definitions():
        current = None
        for state in states:
            current = computed.merge_states(definition, current, state.get(definition.name))
        if current:
            merged[definition.name] = current
    return merged


def computed_states_unmerged(current: dict[str, Any], taken: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The survivor's state per trait once the profile whose state `taken` merged into it is
    given back (`before`: the survivor's own state at the merge); see computed.unmerge_state."""
    unmerged = dict(current)
    for definition in definitions():
        state = computed.unmerge_state(
            definition, current.get(definition.name), taken.get(definition.name), before.get(definition.name)
        )
        if state:
            unmerged[definition.name] = state
        else:
            unmerged.pop(definition.name, None)
    return unmerged
