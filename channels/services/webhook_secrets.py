"""The secrets inbound provider webhooks are signed with, encrypted at rest."""

import base64
import hashlib
from uuid import UUID

from cryptography.fernet import Fernet
from django.conf import settings

from channels.models import WebhookProvider, WebhookSecret
from config.core.errors import BadRequest, NotFound


def fernet() -> Fernet:
    key = hashlib.sha256(settings.CHANNELS_SECRETS_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def webhook_secret_set(*, source_id: UUID, provider: str, secret: str) -> WebhookSecret:
    """Store (or replace) a source's inbound webhook secret, encrypted."""
    if provider not in WebhookProvider.values:
        raise BadRequest(f"provider must be one of {WebhookProvider.values}", code="invalid_provider")
    if not secret:
        raise BadRequest("secret must not be empty", code="invalid_secret")
    row, _ = WebhookSecret.objects.update_or_create(
        source_id=source_id, provider=provider, defaults={"secret_encrypted": fernet().encrypt(secret.encode())}
    )
    return row


def webhook_secret_reveal(*, source_id: UUID, provider: str) -> str:
    encrypted = (
        WebhookSecret.objects.filter(source_id=source_id, provider=provider)
        .values_list("secret_encrypted", flat=True)
        .first()
    )
    if encrypted is None:
        raise NotFound("no such webhook")
    return fernet().decrypt(bytes(encrypted)).decode()
