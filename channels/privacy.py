"""What channels holds about a person, for the profile store's erase and export."""

from typing import Any
from uuid import UUID

from channels.models import Delivery


def deliveries_erase(customer_ids: list[UUID]) -> dict[str, int]:
    """Delete the deliveries of customers being erased (in the erase transaction)."""
    deleted, _ = Delivery.objects.filter(customer_id__in=customer_ids).delete()
    return {"channels.Delivery": deleted}


def deliveries_export(customer_ids: list[UUID]) -> list[dict[str, Any]]:
    rows = Delivery.objects.filter(customer_id__in=customer_ids).order_by("queued_at", "id").values()
    return [dict(row) for row in rows]
