"""Outbound deliveries and the secrets inbound provider webhooks are signed with."""

import uuid

from django.db import models

from config.core.models import BaseModel


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    SKIPPED = "skipped"


class DeliveryChannel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"


class Delivery(BaseModel):
    """One outbound message. The idempotency key makes `deliver` safe to call twice."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    idempotency_key = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=16, choices=DeliveryChannel.choices)
    purpose = models.CharField(max_length=64, default="transactional")
    customer_id = models.UUIDField(db_index=True, help_text="The profiles customer the message is for.")
    content = models.JSONField(default=dict)
    fallback = models.JSONField(default=list, blank=True, help_text="Providers to try after the primary.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    provider = models.CharField(max_length=64, blank=True, default="", help_text="The provider that took it.")
    address = models.CharField(max_length=512, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    provider_message_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    queued_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.id} ({self.status})"


class WebhookProvider(models.TextChoices):
    TWILIO = "twilio", "Twilio inbound SMS"
    CHAT = "chat", "Chat (Stripe-style signature)"
    POS = "pos", "Point of sale (Stripe-style signature)"
    SENDGRID = "sendgrid", "SendGrid Event Webhook (ECDSA; the secret is SendGrid's public key)"


class WebhookSecret(BaseModel):
    """The signing secret of one source's inbound webhook.

    Verifying an HMAC needs the secret itself (a hash of it cannot recompute the MAC), so it is
    stored encrypted (Fernet, keyed from CHANNELS_SECRETS_KEY) rather than hashed, and never
    shown by the admin or written to logs.
    """

    id = models.BigAutoField(primary_key=True)
    source_id = models.UUIDField(help_text="The profiles source the webhook URL carries.")
    provider = models.CharField(max_length=16, choices=WebhookProvider.choices)
    secret_encrypted = models.BinaryField(editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_id", "provider"], name="channels_one_secret_per_provider")
        ]

    def __str__(self) -> str:
        return f"{self.provider} webhook of {self.source_id}"


class UndeliverableAddress(BaseModel):
    """An address a provider reported as bouncing: delivery skips it until it is removed."""

    id = models.BigAutoField(primary_key=True)
    channel = models.CharField(max_length=16, choices=DeliveryChannel.choices)
    address = models.CharField(max_length=512)
    reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "address"], name="channels_one_undeliverable_row")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address}"
