"""Reads of the channels app, and the few profile facts delivery needs at send time."""

import threading
import time
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q

from channels import contact
from channels.models import ContactPolicy, Delivery, DeliveryStatus, UndeliverableAddress
from profiles import facade as profiles
from profiles.contracts import CustomerProfile

_ADDRESS_KINDS = {"email": "email", "sms": "phone"}
PUSH_TOKEN_KIND = "push_token"  # noqa: S105 - an identity kind, not a secret


def delivery_get(*, delivery_id: UUID) -> Delivery | None:
    return Delivery.objects.filter(id=delivery_id).first()


def delivery_named(value: object) -> Delivery | None:
    """The delivery a provider's report names by the id we gave it (a string it echoes back);
    None when it names none, or something that is not an id."""
    try:
        return delivery_get(delivery_id=UUID(str(value))) if value else None
    except ValueError:
        return None


def delivery_by_provider_id(*, channel: str, provider_message_id: str) -> Delivery | None:
    return (
        Delivery.objects.filter(channel=channel, provider_message_id=provider_message_id)
        .order_by("-created_at")
        .first()
    )


def providers_for(*, channel: str, fallback: list[str]) -> list[str]:
    """The channel's configured providers in order, then the caller's fallback hints; only those
    enabled and holding the credentials their kind needs. When none is, and
    CHANNELS_CONSOLE_UNCONFIGURED is on (embedded mode), the console provider, which logs the
    message: never as a failover, so a configured provider that is down is never taken for sent."""
    names = list(settings.CHANNELS_ROUTES.get(channel, ())) + list(fallback)
    usable = [
        name
        for name in dict.fromkeys(names)
        if name in settings.CHANNELS_PROVIDERS and _usable(settings.CHANNELS_PROVIDERS[name])
    ]
    if not usable and settings.CHANNELS_CONSOLE_UNCONFIGURED:
        return [CONSOLE_PROVIDER]
    return usable


CONSOLE_PROVIDER = "console"


# A provider of these kinds without every one of these settings cannot send: it is not offered
# (the default Twilio entry exists whether or not the deployment has a Twilio account).
_REQUIRED_SETTINGS = {"twilio": ("base_url", "account_sid", "auth_token", "from_number")}


def _usable(config: dict[str, str]) -> bool:
    if config.get("enabled", "true") != "true":
        return False
    return all(config.get(name) for name in _REQUIRED_SETTINGS.get(config.get("kind", ""), ()))


Identities = Sequence[tuple[str, str]]


def customer_identities(*, customer: CustomerProfile) -> Identities:
    """Every (kind, value) of the person, the profile and those merged into it, oldest first."""
    return profiles.customer_identities(customer_ids=[customer.id]).get(customer.id, [])


def _newest(identities: Identities, kind: str) -> str:
    return next((value for found, value in reversed(identities) if found == kind), "")


def customer_address(*, customer: CustomerProfile, channel: str, identities: Identities | None = None) -> str:
    """Where a message on `channel` goes: the newest email or phone identity of the person, for
    push the newest `push_token` identity (a source listing push_token among its identity kinds
    records one per device) else the `push_token` trait (an identify from the app), the
    `webhook_url` trait for webhooks. Empty when there is none."""
    if channel == "webhook":
        url = (customer.traits or {}).get("webhook_url")
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
    if channel == "push":
        token = _newest(
            identities if identities is not None else customer_identities(customer=customer), PUSH_TOKEN_KIND
        )
        trait = (customer.traits or {}).get(PUSH_TOKEN_KIND)
        if not token and isinstance(trait, str) and 0 < len(trait.strip()) <= 512:
            token = trait.strip()
        return token
    kind = _ADDRESS_KINDS.get(channel)
    if kind is None:
        return ""
    return _newest(identities if identities is not None else customer_identities(customer=customer), kind)


def customer_ids_for_message(*, customer: CustomerProfile) -> dict[str, Any]:
    """userId/anonymousId (and email/phone) that make ingestion resolve a message to this person:
    profiles' one way to address a customer."""
    return profiles.customer_message_ids(customer_ids=[customer.id]).get(customer.id, {})


_UNDELIVERABLE_SQL = (
    f"SELECT 1 FROM {UndeliverableAddress._meta.db_table} "  # noqa: S608 - model metadata, values bound
    "WHERE channel = %s AND address = %s LIMIT 1"
)


def address_undeliverable(*, channel: str, address: str) -> bool:
    """Asked on every send: plain SQL on the (channel, address) unique index, no ORM compile."""
    with connection.cursor() as cursor:
        cursor.execute(_UNDELIVERABLE_SQL, [channel, address])
        return cursor.fetchone() is not None


_UNDELIVERABLE_MANY_SQL = (
    f"SELECT u.channel, u.address FROM {UndeliverableAddress._meta.db_table} AS u "  # noqa: S608 - values bound
    "JOIN unnest(%s::text[], %s::text[]) AS q(channel, address) ON u.channel = q.channel AND u.address = q.address"
)


def addresses_undeliverable(*, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (channel, address) pairs are marked undeliverable: one query for a batch of sends,
    of one shape whatever the batch (arrays), on the (channel, address) unique index."""
    if not pairs:
        return set()
    wanted = list(dict.fromkeys(pairs))
    with connection.cursor() as cursor:
        cursor.execute(_UNDELIVERABLE_MANY_SQL, [[c for c, _ in wanted], [a for _, a in wanted]])
        return {(channel, address) for channel, address in cursor.fetchall()}


# --- the contact policy -------------------------------------------------------------------------

_policy_lock = threading.Lock()
_policy_cache: dict[str, tuple[float, contact.Policy]] = {}


def contact_policy() -> contact.Policy:
    """The workspace's policy, as the pure rules take it; a process trusts its copy for
    CHANNELS_CONTACT_POLICY_REFRESH_SECONDS (a save through the service drops it at once)."""
    now = time.monotonic()
    with _policy_lock:
        cached = _policy_cache.get("policy")
        if cached is not None and now - cached[0] < settings.CHANNELS_CONTACT_POLICY_REFRESH_SECONDS:
            return cached[1]
    row = ContactPolicy.objects.filter(id=ContactPolicy.SINGLETON_ID).first()
    policy = contact_policy_from(row) if row is not None else contact.Policy()
    with _policy_lock:
        _policy_cache["policy"] = (now, policy)
    return policy


def contact_policy_forget() -> None:
    with _policy_lock:
        _policy_cache.clear()


def contact_policy_from(row: ContactPolicy) -> contact.Policy:
    try:
        caps = contact.parse_caps(row.caps)
    except contact.PolicyError:
        # The admin and the service validate; a row edited by hand in SQL must not stop delivery
        # or, worse, lift the caps silently: an unreadable rule set caps every non-exempt message.
        caps = (contact.CapRule(contact.ANY, contact.ANY, 0, timedelta(days=1)),)
    return contact.Policy(
        caps=caps,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        fallback_timezone=row.fallback_timezone or "UTC",
        high_priority_bypasses_caps=row.high_priority_bypasses_caps,
    )


# Counted towards caps: what went out (sent_at is set, whatever happened after) and what is on its
# way. At send time the queue is not counted: those messages have not gone out, and the first of
# them to be claimed is the one that goes.
_ON_THE_WAY = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
# A delivery is counted from when it went out; retries can delay that past its creation by this
# much at most (CHANNELS_MAX_ATTEMPTS backoffs capped at CHANNELS_RETRY_MAX_SECONDS), generously.
_SEND_DELAY_MARGIN = timedelta(days=1)


def contact_facts(
    *, customer_ids: Collection[UUID], since: datetime | None, at_send: bool, exclude: UUID | None = None
) -> dict[UUID, tuple[str | None, list[contact.Sent]]]:
    """Per customer: the `timezone` trait and the messages that count towards the caps since
    `since` (over the profiles merged into it too). A fixed number of queries whatever the number
    of customers; the deliveries come from the (customer_id, created_at) index."""
    ids = set(customer_ids)
    owner: dict[UUID, UUID] = {}
    zones: dict[UUID, str | None] = {}
    for cid, person in profiles.customer_profiles(customer_ids=ids).items():
        tz = person.traits.get("timezone")
        zones[cid] = tz if isinstance(tz, str) else None
        for member in person.member_ids:
            # Two ids of one person asked together: the messages count once, for the first.
            owner.setdefault(member, cid)
    sent: dict[UUID, list[contact.Sent]] = {cid: [] for cid in ids}
    if since is not None and owner:
        statuses = [DeliveryStatus.SENDING] if at_send else list(_ON_THE_WAY)
        rows = Delivery.objects.filter(
            Q(sent_at__isnull=False) | Q(status__in=statuses),
            customer_id__in=list(owner),
            created_at__gte=since - _SEND_DELAY_MARGIN,
        )
        if exclude is not None:
            rows = rows.exclude(id=exclude)
        for cid, purpose, channel, sent_at, created_at in rows.values_list(
            "customer_id", "purpose", "channel", "sent_at", "created_at"
        ):
            when = sent_at or created_at
            if when > since:
                sent[owner[cid]].append(contact.Sent(purpose, channel, when))
    return {cid: (zones.get(cid), sent[cid]) for cid in ids}


def contact_verdicts(
    *,
    customer_ids: Collection[UUID],
    channel: str,
    purpose: str,
    priority: str,
    at: datetime,
    at_send: bool = False,
    exclude: UUID | None = None,
) -> dict[UUID, contact.ContactVerdict]:
    """The contact policy's verdict for each customer, for one message of this kind at `at`."""
    policy = contact_policy()
    if purpose in contact.EXEMPT_PURPOSES:
        return {cid: contact.ContactVerdict(True, contact.EXEMPT) for cid in customer_ids}
    window = policy.longest_window
    facts = contact_facts(
        customer_ids=customer_ids, since=at - window if window else None, at_send=at_send, exclude=exclude
    )
    return {
        cid: contact.evaluate(
            policy,
            purpose=purpose,
            channel=channel,
            priority=priority,
            now=at,
            tz=contact.zone(tz_name, policy.fallback_timezone),
            sent=sent,
        )
        for cid, (tz_name, sent) in facts.items()
    }


def dead_deliveries(*, since: datetime, recent: int) -> tuple[list[tuple[str, int]], list[tuple[Any, ...]]]:
    """(channel, count) of dead deliveries since `since`, most first; the `recent` newest rows
    (id, channel, attempts, last_error, created_at) of any age."""
    by_channel = (
        Delivery.objects.filter(status=DeliveryStatus.DEAD, created_at__gte=since)
        .values("channel")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    newest = (
        Delivery.objects.filter(status=DeliveryStatus.DEAD)
        .order_by("-created_at")
        .values_list("id", "channel", "attempts", "last_error", "created_at")[:recent]
    )
    return [(row["channel"], row["n"]) for row in by_channel], list(newest)
