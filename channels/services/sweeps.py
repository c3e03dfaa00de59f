"""Sweepers: deliveries stuck in "sending" after a worker crash, and "queued" ones whose task
was lost."""

from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from channels.services.recording import finish


@dataclass(frozen=True, slots=True)
class SweepResult:
    requeued: list[str]
    dead: list[str]


def deliveries_stuck_sweep(*, older_than: float, batch: int = 500) -> SweepResult:
    """Deliveries claimed ("sending") longer ago than `older_than` seconds belong to a worker
    that died mid-send: whether the provider took the message is unknown. Those whose provider
    deduplicates by our idempotency key (CHANNELS_SWEEP_RESEND_CHANNELS: Twilio's
    I-Twilio-Idempotency-Token, the webhook's Idempotency-Key) are queued again and re-sent with
    the same key; the others (SMTP, FCM accept no key) are dead with the reason rather than risk
    a duplicate, and so is one that has used up its attempts (a message that kills its worker).
    Rows are taken FOR UPDATE SKIP LOCKED, so two sweepers never take the same one, and the send
    task claims under a row lock, so a re-enqueued delivery is sent by one worker only."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    requeued: list[str] = []
    dead: list[Delivery] = []
    with transaction.atomic():
        stuck = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.SENDING, updated_at__lt=cutoff)
            .order_by("updated_at")[:batch]
        )
        for delivery in stuck:
            if (
                delivery.channel in settings.CHANNELS_SWEEP_RESEND_CHANNELS
                and delivery.attempts < settings.CHANNELS_MAX_ATTEMPTS
            ):
                requeued.append(str(delivery.id))
            else:
                dead.append(delivery)
        if requeued:
            Delivery.objects.filter(id__in=requeued).update(
                status=DeliveryStatus.QUEUED,
                last_error="worker lost mid-send; re-sent with the same idempotency key",
                updated_at=timezone.now(),
            )
            from channels.tasks import send_delivery

            for delivery_id in requeued:
                # A retry: it carries a last_error, which the task `deliver` enqueued leaves alone.
                transaction.on_commit(partial(send_delivery.apply_async, (delivery_id,), {"retry": True}))
    for delivery in dead:
        reason = (
            f"worker lost mid-send after {delivery.attempts} attempts"
            if delivery.channel in settings.CHANNELS_SWEEP_RESEND_CHANNELS
            else f"worker lost mid-send; {delivery.channel} providers take no idempotency key, "
            "so it is not re-sent (it may or may not have arrived)"
        )
        with transaction.atomic():
            # Still stuck? A late worker may have finished it since the sweep's transaction.
            if Delivery.objects.select_for_update().filter(id=delivery.id, status=DeliveryStatus.SENDING).exists():
                finish(delivery, DeliveryStatus.DEAD, error=reason)
    return SweepResult(requeued=requeued, dead=[str(delivery.id) for delivery in dead])


def deliveries_queued_sweep(*, older_than: float, batch: int = 500) -> list[str]:
    """Deliveries still "queued" `older_than` seconds after their last change lost their task
    (the broker restarted, or the process died between commit and enqueue): enqueue a task for
    each again and touch them, so the next sweep leaves them alone while it runs. A task that
    was only late is harmless: the claim lets one of the two send it."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    with transaction.atomic():
        lost = [
            str(delivery_id)
            for delivery_id in Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.QUEUED, updated_at__lt=cutoff)
            .order_by("updated_at")
            .values_list("id", flat=True)[:batch]
        ]
        if lost:
            Delivery.objects.filter(id__in=lost).update(updated_at=timezone.now())
            from channels.tasks import send_delivery

            for delivery_id in lost:
                transaction.on_commit(partial(send_delivery.apply_async, (delivery_id,), {"retry": True}))
    return lost
