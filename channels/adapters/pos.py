"""A point-of-sale purchase webhook, signed Stripe-style, mapped to `Order Completed`.

{"id": "evt_...", "type": "order.completed", "created": <unix>,
 "data": {"order_id": "...", "store_id": "...", "currency": "EUR", "total": "23.50",
          "customer": {...}, "line_items": [{"sku", "name", "quantity", "unit_price"}]}}
"""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from channels.adapters.identity import ids_from


def _amount(value: object) -> float | None:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def to_message(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    assert isinstance(data, dict)
    items = data.get("line_items") if isinstance(data.get("line_items"), list) else []
    assert isinstance(items, list)
    products = [
        {
            "sku": str(item.get("sku", "")),
            "name": str(item.get("name", "")),
            "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else 1,
            "price": _amount(item.get("unit_price")),
        }
        for item in items
        if isinstance(item, dict)
    ]
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"pos:{payload.get('id', '')}",
        "properties": {
            "order_id": str(data.get("order_id", "")),
            "store_id": str(data.get("store_id", "")),
            "currency": str(data.get("currency", "")),
            "total": _amount(data.get("total")),
            "revenue": _amount(data.get("total")),
            "products": products,
        },
        **ids_from(data.get("customer"), prefix="pos"),
    }
    created = payload.get("created")
    if isinstance(created, int):
        message["timestamp"] = datetime.fromtimestamp(created, UTC).isoformat()
    return message
