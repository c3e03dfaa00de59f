"""The claim of a send attempt: take queued deliveries, then check whether each may go (the
customer, consent, the address, the contact policy), and what open breakers make them wait."""

import contextlib
import random
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels import contact, selectors
from channels.breaker import any_open, destination_host, open_for
from channels.models import Delivery, DeliveryStatus
from channels.services.outcomes import POLICY_REASON_PREFIX
from profiles import facade as profiles


@dataclass(slots=True)
class Claim:
    delivery: Delivery
    skip_reason: str


_TABLE = Delivery._meta.db_table
_DELIVERY_COLUMNS = [field.column for field in Delivery._meta.concrete_fields]
_NEVER_TRIED = "status = 'queued' AND attempts = 0 AND last_error = ''"
# The claim as one statement: lock the rows, check they are still queued and take them, where
# an ORM select_for_update + save costs two statements per delivery. The given ids wait for a
# row lock held elsewhere (and then see it is taken); the fresh ones skip locked rows and those
# whose destination hint has an open breaker here (an empty list while none is open).
_CLAIM_SQL = (
    f"WITH fresh AS (SELECT id FROM {_TABLE} WHERE {_NEVER_TRIED} AND NOT id = ANY(%s::uuid[]) "  # noqa: S608
    "AND NOT destination = ANY(%s::text[]) "
    "ORDER BY status, created_at LIMIT %s FOR UPDATE SKIP LOCKED) "
    f"UPDATE {_TABLE} SET status = %s, attempts = attempts + 1, updated_at = %s "
    "WHERE status = 'queued' AND id IN (SELECT unnest(%s::uuid[]) UNION ALL SELECT id FROM fresh) "
    f"RETURNING {', '.join(_DELIVERY_COLUMNS)}"
)
_CLAIM_FRESH_SQL = _CLAIM_SQL.replace("WHERE status = 'queued' AND id IN", f"WHERE {_NEVER_TRIED} AND id IN", 1)


def breaker_delay(wait: float) -> float:
    # Spread the retries of the many deliveries parked on one outage over a second past the trial.
    return max(wait, 0.05) + random.uniform(0, 1.0)  # noqa: S311 - jitter, not a secret


def breakers_waits(delivery_ids: list[UUID]) -> dict[UUID, float]:
    """Seconds to wait for each of these queued deliveries whose providers all have an open
    breaker in this process (the others are not in the answer). Costs nothing while no breaker
    is open, one query for the lot otherwise."""
    if not any_open() or not delivery_ids:
        return {}
    rows = Delivery.objects.filter(id__in=delivery_ids, status=DeliveryStatus.QUEUED).values_list(
        "id", "channel", "fallback", "address", "destination", "queued_at"
    )
    now = timezone.now()
    answer: dict[UUID, float] = {}
    for delivery_id, channel, fallback, address, destination, queued_at in rows:
        if (now - queued_at).total_seconds() > settings.CHANNELS_MAX_DEFER_SECONDS:
            continue  # waited long enough: the claim gives it up
        if not address and destination:
            # Never claimed yet: the hint recorded when it was queued names its one breaker.
            provider, _, host = destination.partition("@")
            wait = open_for(provider, host)
            if wait > 0:
                answer[delivery_id] = breaker_delay(wait)
            continue
        waits = []
        for name in selectors.providers_for(channel=channel, fallback=fallback):
            config = settings.CHANNELS_PROVIDERS[name]
            if not config.get("base_url") and not config.get("host") and not address:
                break  # the destination is the address, not known before the first claim
            waits.append(open_for(name, destination_host(config, address)))
        else:
            if waits and min(waits) > 0:
                answer[delivery_id] = breaker_delay(min(waits))
    return answer


def claim_many(delivery_ids: list[UUID], *, fresh: int, only_fresh: bool, parked: list[str]) -> list[Claim]:
    """Take queued deliveries (status sending), then check whether each may go: the customer,
    consent, the address, the contact policy; a handful of queries for the whole batch. The
    claim is one statement on its own (a task that finds its delivery taken costs one round
    trip); a crash after it leaves the deliveries "sending" for the stuck sweeper, as a crash
    mid-send does. The address is written when the attempt finishes."""
    # raw() applies the fields' converters (the JSON content) to the returned rows.
    deliveries = list(
        Delivery.objects.raw(
            _CLAIM_FRESH_SQL if only_fresh else _CLAIM_SQL,
            [delivery_ids, parked, fresh, DeliveryStatus.SENDING, timezone.now(), delivery_ids],
        )
    )
    if not deliveries:
        return []
    # The contact policy's advisory locks are transaction-scoped: a transaction only for them.
    policed = any(delivery.purpose not in contact.EXEMPT_PURPOSES for delivery in deliveries)
    with transaction.atomic() if policed else contextlib.nullcontext():
        return _checked(deliveries)


def _checked(deliveries: list[Delivery]) -> list[Claim]:
    # The customers and their identities are read once for the batch: each read is a round trip
    # on the hot path.
    people = profiles.customer_reach(customer_ids={delivery.customer_id for delivery in deliveries})
    allowed: dict[tuple[str, str], dict[UUID, bool]] = {}
    for kind in {(delivery.purpose, delivery.channel) for delivery in deliveries}:
        owners = [
            people[d.customer_id].profile.id
            for d in deliveries
            if (d.purpose, d.channel) == kind and d.customer_id in people
        ]
        allowed[kind] = profiles.consent_allows_many(customer_ids=owners, purpose=kind[0], channel=kind[1])
    claims: list[Claim] = []
    for delivery in deliveries:
        person = people.get(delivery.customer_id)
        claim = Claim(delivery, "")
        claims.append(claim)
        if person is None:
            claim.skip_reason = "customer not found"
        elif not allowed[(delivery.purpose, delivery.channel)].get(person.profile.id, False):
            claim.skip_reason = f"no consent for {delivery.purpose} on {delivery.channel}"
        else:
            delivery.address = selectors.customer_address(
                customer=person.profile, channel=delivery.channel, identities=person.identities
            )
            if not delivery.address:
                claim.skip_reason = f"no {delivery.channel} address"
    dead = selectors.addresses_undeliverable(
        pairs=[(claim.delivery.channel, claim.delivery.address) for claim in claims if not claim.skip_reason]
    )
    for claim in claims:
        if claim.skip_reason:
            continue
        if (claim.delivery.channel, claim.delivery.address) in dead:
            claim.skip_reason = f"{claim.delivery.channel} address is undeliverable (bounced)"
        else:
            claim.skip_reason = _policy_refusal(claim.delivery)
    return claims


def _policy_refusal(delivery: Delivery) -> str:
    """The contact policy again, at send time: why this delivery may not go now, or "".

    Messages of one customer are claimed one at a time (a transaction-scoped advisory lock on
    the customer) so two workers cannot both take the last slot of a cap. A refused delivery is
    skipped, not held: holding is the journey's decision (contact_check's retry_at on a timer),
    and a message that waited for the morning may no longer be worth sending."""
    if delivery.purpose in contact.EXEMPT_PURPOSES:
        return ""
    if selectors.contact_policy().caps:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", [f"contact:{delivery.customer_id}"])
    verdict = selectors.contact_verdicts(
        customer_ids=[delivery.customer_id],
        channel=delivery.channel,
        purpose=delivery.purpose,
        priority=delivery.priority,
        at=timezone.now(),
        at_send=True,
        exclude=delivery.id,
    )[delivery.customer_id]
    if verdict.allowed:
        return ""
    retry = f"; allowed again at {verdict.retry_at.isoformat()}" if verdict.retry_at else ""
    return f"{POLICY_REASON_PREFIX}{verdict.reason}: {verdict.detail}{retry}"
