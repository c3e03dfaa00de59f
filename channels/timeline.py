"""Deliveries on the customer timeline (profiles.contracts.on_timeline): one entry per message,
at the time it was asked for, with where it stands now."""

from uuid import UUID

from django.db.models import Q

from channels.models import Delivery
from profiles.contracts import TimelineEntry, TimelineQuery

DELIVERY = "delivery"


def deliveries_timeline(query: TimelineQuery) -> list[TimelineEntry]:
    """The customer's newest deliveries older than the cursor, from the (customer_id, created_at)
    index; the key is the id as hex, so text order is the database's UUID order."""
    queryset = Delivery.objects.filter(customer_id__in=query.customer_ids)
    if query.before is not None:
        at, kind, key = query.before
        if kind > DELIVERY:
            queryset = queryset.filter(created_at__lte=at)
        elif kind < DELIVERY:
            queryset = queryset.filter(created_at__lt=at)
        else:
            queryset = queryset.filter(created_at__lte=at).filter(
                Q(created_at__lt=at) | Q(created_at=at, id__lt=UUID(hex=key))
            )
    rows = queryset.order_by("-created_at", "-id").values_list(
        "id",
        "created_at",
        "channel",
        "purpose",
        "priority",
        "status",
        "provider",
        "attempts",
        "last_error",
        "idempotency_key",
        "sent_at",
        "finished_at",
    )[: query.limit]
    return [
        TimelineEntry(
            at=created_at,
            kind=DELIVERY,
            key=delivery_id.hex,
            id=str(delivery_id),
            channel=channel,
            data={
                "purpose": purpose,
                "priority": priority,
                "status": status,
                "provider": provider,
                "attempts": attempts,
                "last_error": last_error,
                "idempotency_key": idempotency_key,
                "sent_at": sent_at,
                "finished_at": finished_at,
            },
        )
        for (
            delivery_id,
            created_at,
            channel,
            purpose,
            priority,
            status,
            provider,
            attempts,
            last_error,
            idempotency_key,
            sent_at,
            finished_at,
        ) in rows
    ]
