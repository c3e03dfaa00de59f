"""Redis keys of the channels app, under the project's `tl:` namespace; every write has a TTL."""

import hashlib

from config.core.redis import NAMESPACE


def webhook_signature_seen(source_id: str, signature: str) -> str:
    digest = hashlib.sha256(signature.encode()).hexdigest()[:32]
    return f"{NAMESPACE}:channels:webhook-seen:{source_id}:{digest}"


def send_pending() -> str:
    """Set while a send task that has not started yet is queued: it will take every delivery
    never tried so far, so `deliver` need not publish another (services.deliveries.send_enqueue)."""
    return f"{NAMESPACE}:channels:send-pending"


def status_early(channel: str, provider_message_id: str) -> str:
    """A provider's status report that arrived before the send recorded the provider's message
    id (services.reports.delivery_status_report)."""
    digest = hashlib.sha256(provider_message_id.encode()).hexdigest()[:32]
    return f"{NAMESPACE}:channels:status-early:{channel}:{digest}"
