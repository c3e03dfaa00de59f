"""Outcome events: each delivery outcome as a canonical track event on the customer's profile."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from profiles import facade as profiles
from profiles.contracts import InternalEvent, SourceInfo

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
    return profiles.system_source(name=SYSTEM_SOURCE_NAME)


def outcome_record(*, delivery: Delivery, status: str, reason: str = "") -> None:
    """Put a delivery outcome on the customer's profile as a canonical track event; the
    messageId is derived from delivery and outcome, so recording it twice stores it once."""
    if status in OUTCOME_EVENTS:
        now = timezone.now()
        outcomes_emit([outcome_event(delivery=delivery, status=status, reason=reason, at=now)], received_at=now)


def outcomes_emit(events: Sequence[InternalEvent], *, received_at: datetime) -> None:
    """Ingest outcome events in one call, each addressed to its customer the one way profiles
    addresses a customer (profiles.facade.event_emit). A customer nothing addresses (gone since
    the send, or holding no user id, anonymous id, email or phone) gets no event."""
    if events:
        profiles.event_emit(source_name=SYSTEM_SOURCE_NAME, events=events, received_at=received_at)


def outcome_event(*, delivery: Delivery, status: str, reason: str, at: datetime) -> InternalEvent:
    return InternalEvent(
        customer_id=delivery.customer_id,
        type="track",
        event=OUTCOME_EVENTS[status],
        message_id=f"delivery:{delivery.id}:{status}",
        timestamp=at,
        properties={
            "delivery_id": str(delivery.id),
            "channel": delivery.channel,
            "provider": delivery.provider,
            "status": status,
            "attempts": delivery.attempts,
            **({"reason": reason} if reason else {}),
            **_skip_properties(status, reason),
        },
    )


def _skip_properties(status: str, reason: str) -> dict[str, Any]:
    """A skipped delivery says so, and which rule of the contact policy refused it, so a journey
    can tell "not sent, by policy" from a provider failure."""
    if status != DeliveryStatus.SKIPPED:
        return {}
    properties: dict[str, Any] = {"skipped": True}
    if reason.startswith(POLICY_REASON_PREFIX):
        properties["policy"] = reason[len(POLICY_REASON_PREFIX) :].split(":", 1)[0]
    return properties
