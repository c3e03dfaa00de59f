"""Reads of the channels app, and the few profile facts delivery needs at send time."""

from typing import Any
from uuid import UUID

from django.conf import settings

from channels.models import Delivery, UndeliverableAddress
from profiles.models import Customer, Identity, Source

_ADDRESS_KINDS = {"email": "email", "sms": "phone"}


def delivery_get(*, delivery_id: UUID) -> Delivery | None:
    return Delivery.objects.filter(id=delivery_id).first()


def providers_for(*, channel: str, fallback: list[str]) -> list[str]:
    """The channel's configured providers in order, then the caller's fallback hints."""
    names = list(settings.CHANNELS_ROUTES.get(channel, ())) + list(fallback)
    return [
        name
        for name in dict.fromkeys(names)
        if settings.CHANNELS_PROVIDERS.get(name, {}).get("enabled", "true") == "true"
    ]


def _cluster(customer: Customer) -> list[UUID]:
    return [customer.id, *Customer.objects.filter(merged_into=customer).values_list("id", flat=True)]


def customer_address(*, customer: Customer, channel: str) -> str:
    """Where a message on `channel` goes: the newest email or phone identity of the person,
    or the `webhook_url` trait for webhooks. Empty when there is none."""
    if channel == "webhook":
        url = (customer.traits or {}).get("webhook_url")
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
    kind = _ADDRESS_KINDS.get(channel)
    if kind is None:
        return ""
    value = (
        Identity.objects.filter(customer_id__in=_cluster(customer), kind=kind)
        .order_by("-created_at")
        .values_list("value", flat=True)
        .first()
    )
    return value or ""


def customer_ids_for_message(*, customer: Customer) -> dict[str, Any]:
    """userId/anonymousId (and email/phone) that make ingestion resolve a message to this person."""
    identities = dict(
        Identity.objects.filter(customer_id__in=_cluster(customer)).order_by("created_at").values_list("kind", "value")
    )
    ids: dict[str, Any] = {}
    if "user_id" in identities:
        ids["userId"] = identities["user_id"]
    elif "anonymous_id" in identities:
        ids["anonymousId"] = identities["anonymous_id"]
    else:
        traits = {kind: identities[kind] for kind in ("email", "phone") if kind in identities}
        ids["anonymousId"] = f"tl-customer-{customer.id}"
        if traits:
            ids["context"] = {"traits": traits}
    return ids


def system_source_row(*, name: str) -> Source | None:
    return Source.objects.filter(name=name).first()


def address_undeliverable(*, channel: str, address: str) -> bool:
    return UndeliverableAddress.objects.filter(channel=channel, address=address).exists()
