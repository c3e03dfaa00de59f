"""Outcome events: each delivery outcome as a canonical track event on the customer's profile."""

from datetime import datetime
from typing import Any

from django.utils import timezone

from channels import selectors
from channels.models import Delivery, DeliveryStatus
from profiles import services as profile_services
from profiles.contracts import SourceInfo
from profiles.ingest import event_ingest
from profiles.models import Customer
from profiles.selectors import customer_get

SYSTEM_SOURCE_NAME = "throughline-channels"
OUTCOME_EVENTS: dict[str, str] = {
    DeliveryStatus.SENT: "Message Sent",
    DeliveryStatus.DELIVERED: "Message Delivered",
    DeliveryStatus.FAILED: "Message Failed",
    DeliveryStatus.DEAD: "Message Failed",
    DeliveryStatus.SKIPPED: "Message Failed",
}
# How a skipped delivery's reason names the contact policy's rule that refused it.
POLICY_REASON_PREFIX = "contact policy "


def system_source() -> SourceInfo:
    """The source Throughline's own events (message outcomes) are ingested under; created once."""
    return profile_services.system_source(name=SYSTEM_SOURCE_NAME)


def outcome_record(*, delivery: Delivery, status: str, reason: str = "") -> None:
    """Put a delivery outcome on the customer's profile as a canonical track event; the
    messageId is derived from delivery and outcome, so recording it twice stores it once."""
    if status not in OUTCOME_EVENTS:
        return
    customer = customer_get(customer_id=delivery.customer_id)
    if customer is None:
        return
    message = outcome_message(
        delivery=delivery, status=status, reason=reason, at=timezone.now(), customer=customer, identities=None
    )
    event_ingest(source=system_source(), raw_messages=[message], call_type="track", received_at=timezone.now())


def outcome_message(
    *,
    delivery: Delivery,
    status: str,
    reason: str,
    at: datetime,
    customer: Customer,
    identities: selectors.Identities | None,
) -> dict[str, Any]:
    return {
        "type": "track",
        "event": OUTCOME_EVENTS[status],
        "messageId": f"delivery:{delivery.id}:{status}",
        "timestamp": at.isoformat(),
        "properties": {
            "delivery_id": str(delivery.id),
            "channel": delivery.channel,
            "provider": delivery.provider,
            "status": status,
            "attempts": delivery.attempts,
            **({"reason": reason} if reason else {}),
            **_skip_properties(status, reason),
        },
        **selectors.customer_ids_for_message(customer=customer, identities=identities),
    }


def _skip_properties(status: str, reason: str) -> dict[str, Any]:
    """A skipped delivery says so, and which rule of the contact policy refused it, so a journey
    can tell "not sent, by policy" from a provider failure."""
    if status != DeliveryStatus.SKIPPED:
        return {}
    properties: dict[str, Any] = {"skipped": True}
    if reason.startswith(POLICY_REASON_PREFIX):
        properties["policy"] = reason[len(POLICY_REASON_PREFIX) :].split(":", 1)[0]
    return properties
