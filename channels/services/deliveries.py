"""`deliver`: record a delivery and enqueue its send."""

import contextlib
import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from channels import contact, keys, selectors
from channels.breaker import destination_host, destination_key
from channels.models import Delivery, DeliveryChannel
from config.core import observability
from config.core import redis as tl_redis
from config.core.errors import BadRequest
from profiles import facade as profiles

logger = logging.getLogger(__name__)


def deliver(
    *,
    channel: str,
    customer_id: UUID,
    content: dict[str, Any],
    idempotency_key: str,
    purpose: str = "transactional",
    priority: str = "normal",
    fallback: list[str] | None = None,
) -> Delivery:
    """Record a delivery and enqueue its send after commit; the same key returns the same
    delivery and enqueues nothing again."""
    if channel not in DeliveryChannel.values:
        raise BadRequest(f"channel must be one of {DeliveryChannel.values}", code="invalid_channel")
    if not idempotency_key or len(idempotency_key) > 200:
        raise BadRequest("idempotency_key must be 1 to 200 characters", code="invalid_idempotency_key")
    if profiles.consent_conventions.normalize_purpose(purpose) is None:
        raise BadRequest("purpose must be a name such as marketing or transactional", code="invalid_purpose")
    if priority not in contact.PRIORITIES:
        raise BadRequest(f"priority must be one of {list(contact.PRIORITIES)}", code="invalid_priority")
    unknown = [name for name in fallback or [] if name not in settings.CHANNELS_PROVIDERS]
    if unknown:
        raise BadRequest(f"unknown fallback providers: {unknown}", code="invalid_fallback")
    existing = Delivery.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                idempotency_key=idempotency_key,
                channel=channel,
                purpose=profiles.consent_conventions.normalize_purpose(purpose) or purpose,
                priority=priority,
                customer_id=customer_id,
                content=content,
                fallback=list(fallback or []),
                destination=_destination_hint(channel=channel, customer_id=customer_id, fallback=fallback or []),
                queued_at=timezone.now(),
            )
            # After commit, in the caller's trace (a journey step routing an event): the send
            # joins the event's trace even though the commit happens outside the step.
            observability.on_commit_in_context(send_enqueue, str(delivery.id))
    except IntegrityError:
        # A concurrent call with the same key won the insert: that one is the delivery.
        return Delivery.objects.get(idempotency_key=idempotency_key)
    return delivery


def _destination_hint(*, channel: str, customer_id: UUID, fallback: list[str]) -> str:
    """Where the delivery will go, as its breaker is keyed (provider@host), when it has one
    provider: a fresh claim leaves it out while that breaker is open, so a host that is down
    costs no claims. Empty (never left out) with several providers, since a healthy fallback
    must not wait on the primary, and when the destination is not known. At most one lookup of
    the customer (a webhook's URL is the live profile's trait, read as the claim reads it); the
    claim still resolves the address itself."""
    names = selectors.providers_for(channel=channel, fallback=fallback)
    if len(names) != 1:
        return ""
    config = settings.CHANNELS_PROVIDERS[names[0]]
    address = ""
    if not config.get("base_url") and not config.get("host"):
        if channel != DeliveryChannel.WEBHOOK:
            return ""
        customer = profiles.customer_profile(customer_id=customer_id)
        address = selectors.customer_address(customer=customer, channel=channel) if customer is not None else ""
        if not address:
            return ""
    return destination_key(names[0], destination_host(config, address))[:600]


def send_enqueue(delivery_id: str) -> None:
    """Publish the send task of a delivery just committed, unless a send task that has not
    started yet is queued: that one claims every never-tried delivery, oldest first, this one
    included, so a burst of deliveries costs a few tasks rather than one each. The marker
    expires after CHANNELS_SEND_PENDING_SECONDS, so a task lost with the broker holds nothing
    back for long (and the queued sweeper finds what it left)."""
    from channels.tasks import send_delivery

    marked = False
    if tl_redis.is_configured() and settings.CHANNELS_SEND_PENDING_SECONDS > 0:
        try:
            marked = bool(
                tl_redis.client().set(
                    keys.send_pending(), delivery_id, nx=True, ex=settings.CHANNELS_SEND_PENDING_SECONDS
                )
            )
        except RedisError:
            logger.warning("send marker unavailable: publishing the send task anyway", exc_info=True)
        else:
            if not marked:
                return
    try:
        send_delivery.delay(delivery_id)
    except Exception:
        if marked:  # no task behind the marker: let the next delivery publish one
            send_pending_clear()
        raise


def send_pending_clear() -> None:
    """A send task started: deliveries committed from now on publish their own task again."""
    if tl_redis.is_configured():
        with contextlib.suppress(RedisError):
            tl_redis.client().delete(keys.send_pending())
