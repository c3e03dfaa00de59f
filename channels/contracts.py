"""What other apps (the journey engine) may import from channels: frozen results, three calls.

    deliver(...)            -> DeliveryRef     record a message and send it once (idempotency key)
    channels_available(...) -> {channel: None | why not}
    contact_check(...)      -> ContactVerdict  may this customer be contacted now, else when

The contact policy (channels.contact) is workspace-wide: frequency caps across every journey and
channel, quiet hours in the customer's time zone, priorities; transactional messages are exempt.
`deliver` does not ask it first: the send task checks consent, the address and the policy again
when it sends, and skips a delivery they refuse (outcome event "Message Failed" with
`skipped: true`, `reason`, and `policy` naming the rule). Holding a message for later is the
caller's decision: `contact_check` gives `retry_at` for a timer.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils import timezone

from channels import retention, selectors
from channels.contact import PRIORITIES, ContactVerdict
from channels.models import DeliveryChannel
from channels.services.deliveries import deliver as delivery_create
from config.core.errors import BadRequest
from profiles import facade as profiles

CHANNELS: tuple[str, ...] = tuple(DeliveryChannel.values)

# Why a channel cannot be used for a customer (channels_available).
NO_ADDRESS = "no_address"
NO_CONSENT = "no_consent"
UNDELIVERABLE = "undeliverable"
NO_PROVIDER = "no_provider"
UNSUPPORTED = "unsupported"

__all__ = [
    "CHANNELS",
    "NO_ADDRESS",
    "NO_CONSENT",
    "NO_PROVIDER",
    "UNDELIVERABLE",
    "UNSUPPORTED",
    "ContactVerdict",
    "DeliveryRef",
    "channels_available",
    "contact_check",
    "contact_check_many",
    "deliver",
]


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """A delivery as the caller may hold it. `status` is the status when `deliver` returned
    ("queued" for a new one; an earlier call's current status for a repeated key). Outcome
    events carry `properties.delivery_id == str(id)`."""

    id: UUID
    status: str
    channel: str


def deliver(
    *,
    channel: str,
    customer_id: UUID,
    content: dict[str, Any],
    idempotency_key: str,
    purpose: str = "transactional",
    priority: str = "normal",
    fallback: list[str] | None = None,
) -> DeliveryRef:
    """Record a delivery and enqueue its send after the caller's transaction commits; the same
    idempotency key returns the same delivery and sends once. Raises BadRequest on bad input."""
    delivery = delivery_create(
        channel=channel,
        customer_id=customer_id,
        content=content,
        idempotency_key=idempotency_key,
        purpose=purpose,
        priority=priority,
        fallback=fallback,
    )
    return DeliveryRef(id=delivery.id, status=delivery.status, channel=delivery.channel)


def channels_available(*, customer_id: UUID, channels: list[str], purpose: str) -> dict[str, str | None]:
    """Per channel: None when a message for `purpose` could go there now (an address, consent,
    not bounced, a provider configured), else why not: no_address, no_consent, undeliverable,
    no_provider, unsupported (not a channel name). The contact policy is contact_check's."""
    name = profiles.consent_conventions.normalize_purpose(purpose)
    if name is None:
        raise BadRequest("purpose must be a name such as marketing or transactional", code="invalid_purpose")
    customer = profiles.customer_profile(customer_id=customer_id)
    answer: dict[str, str | None] = {}
    for channel in channels:
        if channel not in CHANNELS:
            answer[channel] = UNSUPPORTED
        elif customer is None:
            answer[channel] = NO_ADDRESS
        elif not selectors.providers_for(channel=channel, fallback=[]):
            answer[channel] = NO_PROVIDER
        else:
            address = selectors.customer_address(customer=customer, channel=channel)
            if not address:
                answer[channel] = NO_ADDRESS
            elif not profiles.consent_allows(customer_id=customer.id, purpose=name, channel=channel):
                answer[channel] = NO_CONSENT
            elif selectors.address_undeliverable(channel=channel, address=address):
                answer[channel] = UNDELIVERABLE
            else:
                answer[channel] = None
    return answer


def contact_check(
    *, customer_id: UUID, channel: str, purpose: str, priority: str = "normal", at: datetime | None = None
) -> ContactVerdict:
    """May this customer get a message of this channel, purpose and priority at `at` (now)?
    reason: ok, exempt (transactional), priority_bypass (a high priority over a cap), quiet_hours,
    frequency_cap; retry_at (UTC) when refused: when the quiet hours end or a cap frees a slot."""
    return contact_check_many(customer_ids=[customer_id], channel=channel, purpose=purpose, priority=priority, at=at)[
        customer_id
    ]


def contact_check_many(
    *,
    customer_ids: list[UUID],
    channel: str,
    purpose: str,
    priority: str = "normal",
    at: datetime | None = None,
) -> dict[UUID, ContactVerdict]:
    """contact_check for many customers in three queries (policy cached, customers, deliveries)."""
    name = profiles.consent_conventions.normalize_purpose(purpose)
    if name is None:
        raise BadRequest("purpose must be a name such as marketing or transactional", code="invalid_purpose")
    if channel not in CHANNELS:
        raise BadRequest(f"channel must be one of {list(CHANNELS)}", code="invalid_channel")
    if priority not in PRIORITIES:
        raise BadRequest(f"priority must be one of {list(PRIORITIES)}", code="invalid_priority")
    when = at or timezone.now()
    if timezone.is_naive(when):
        raise BadRequest("at must be timezone-aware", code="invalid_time")
    return selectors.contact_verdicts(
        customer_ids=customer_ids, channel=channel, purpose=name, priority=priority, at=when
    )


@dataclass(frozen=True, slots=True)
class DeadDelivery:
    id: UUID
    channel: str
    attempts: int
    last_error: str
    created_at: datetime


def dead_deliveries(*, since: datetime, recent: int = 10) -> tuple[list[tuple[str, int]], list[DeadDelivery]]:
    """The operations dashboard's view of deliveries that gave up: (channel, count) since `since`,
    most first, and the `recent` newest of any age."""
    by_channel, newest = selectors.dead_deliveries(since=since, recent=recent)
    return by_channel, [DeadDelivery(*row) for row in newest]


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Channels' retention (channels/retention.py): finished deliveries past their days."""
    return retention.retention_apply(now=now)
