"""Providers' reports on the messages they took: delivered, bounced, failed, opted out."""

import contextlib

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from channels import keys
from channels.adapters.base import DELIVERED, OPT_OUT, UNDELIVERABLE, Outcome
from channels.models import Delivery, DeliveryChannel, DeliveryStatus, UndeliverableAddress
from channels.selectors import delivery_named
from channels.services.outcomes import outcome_record
from config.core import redis as tl_redis
from profiles import facade as profiles
from profiles.contracts import SourceInfo


def delivery_outcomes_apply(*, outcomes: list[Outcome], source: SourceInfo) -> list[str]:
    """Apply email provider reports: delivered/bounced move the delivery on, a bounce marks the
    address undeliverable, an unsubscribe or spam report denies email consent. Idempotent."""
    changed: list[str] = []
    for outcome in outcomes:
        delivery = delivery_named(outcome.delivery_id)
        if outcome.kind == DELIVERED and delivery is not None:
            Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENT).update(
                status=DeliveryStatus.DELIVERED, updated_at=timezone.now()
            )
        elif outcome.kind in UNDELIVERABLE:
            if delivery is not None:
                Delivery.objects.filter(
                    id=delivery.id, status__in=[DeliveryStatus.SENT, DeliveryStatus.DELIVERED]
                ).update(
                    status=DeliveryStatus.FAILED,
                    last_error=f"{outcome.kind}: {outcome.reason}",
                    updated_at=timezone.now(),
                )
            address = (delivery.address if delivery is not None else "") or outcome.email.strip().lower()
            if address:
                UndeliverableAddress.objects.update_or_create(
                    channel=DeliveryChannel.EMAIL,
                    address=address,
                    defaults={"reason": f"{outcome.kind}: {outcome.reason}"},
                )
        elif outcome.kind in OPT_OUT:
            customer = (
                profiles.customer_cluster(customer_id=delivery.customer_id)
                if delivery is not None
                else profiles.customer_find(kind="email", value=outcome.email)
            )
            if customer is not None:
                profiles.consent_set(
                    customer_id=customer.id,
                    choices=[
                        profiles.ConsentChoice(purpose, "email", "denied")
                        for purpose in settings.CHANNELS_EMAIL_OPT_OUT_PURPOSES
                    ],
                    origin="webhook",
                    actor=f"webhook:sendgrid:{source.id}",
                    source_id=source.id,
                    source_label=source.name,
                )
                changed.append(f"{customer.id}: email denied ({outcome.kind})")
    return changed


def delivery_status_report(
    *, channel: str, provider_message_id: str, outcome: str, reason: str = "", dead_address: bool = False
) -> Delivery | None:
    """A provider's report on a message it took (delivered or failed): move the delivery on and
    record the outcome event in one transaction. Idempotent: a report seen before, or one that
    arrives after a later state (a "failed" after "delivered" is kept as delivered, never
    downgraded), changes nothing and its event is stored once (messageId per delivery and status).
    `dead_address` marks the address undeliverable (a number that cannot receive SMS)."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .filter(channel=channel, provider_message_id=provider_message_id)
            .order_by("-created_at")
            .first()
        )
        if delivery is None:
            _report_early(channel, provider_message_id, outcome, reason, dead_address)
            return None
        if outcome == DeliveryStatus.DELIVERED and delivery.status == DeliveryStatus.SENT:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.save(update_fields=["status", "updated_at"])
            outcome_record(delivery=delivery, status=DeliveryStatus.DELIVERED)
        elif outcome == DeliveryStatus.FAILED and delivery.status == DeliveryStatus.SENT:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = reason[:2000]
            delivery.save(update_fields=["status", "last_error", "updated_at"])
            outcome_record(delivery=delivery, status=DeliveryStatus.FAILED, reason=reason)
        if dead_address and delivery.address:
            UndeliverableAddress.objects.update_or_create(
                channel=channel, address=delivery.address, defaults={"reason": reason[:2000]}
            )
    return delivery


# How long a status report for a message id not recorded yet waits for its send to record it.
EARLY_REPORT_SECONDS = 600


def _report_early(channel: str, provider_message_id: str, outcome: str, reason: str, dead_address: bool) -> None:
    """A report can beat the send's own write: the provider answers the send with the message id,
    then reports on it (Twilio's callback for a failed number comes within milliseconds) before
    the sending worker has recorded that id. Kept for a while; the send applies it when it
    records the id (early_reports_apply)."""
    if not tl_redis.is_configured() or not provider_message_id:
        return
    report = orjson.dumps({"outcome": outcome, "reason": reason, "dead_address": dead_address})
    with contextlib.suppress(RedisError):
        tl_redis.client().set(keys.status_early(channel, provider_message_id), report, ex=EARLY_REPORT_SECONDS)


def early_reports_apply(deliveries: list[Delivery]) -> None:
    """Apply the status reports that arrived before these sent deliveries recorded their
    provider message ids: one Redis round trip for the wave."""
    sent = [d for d in deliveries if d.provider_message_id and d.channel in EARLY_REPORT_CHANNELS]
    if not sent or not tl_redis.is_configured():
        return
    names = [keys.status_early(d.channel, d.provider_message_id) for d in sent]
    try:
        reports = tl_redis.client().mget(names)
    except RedisError:
        return
    for delivery, name, report in zip(sent, names, reports, strict=True):
        if report is None:
            continue
        found = orjson.loads(report)
        delivery_status_report(
            channel=delivery.channel,
            provider_message_id=delivery.provider_message_id,
            outcome=found["outcome"],
            reason=found["reason"],
            dead_address=found["dead_address"],
        )
        with contextlib.suppress(RedisError):
            tl_redis.client().delete(name)


# Channels whose providers report on a message by the id they answered the send with.
EARLY_REPORT_CHANNELS = frozenset({DeliveryChannel.SMS})
