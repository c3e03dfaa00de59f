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
    PUSH = "push"
    WEBHOOK = "webhook"


class Delivery(BaseModel):
    """One outbound message. The idempotency key makes `deliver` safe to call twice."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    idempotency_key = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=16, choices=DeliveryChannel.choices)
    purpose = models.CharField(max_length=64, default="transactional")
    priority = models.CharField(
        max_length=8, default="normal", help_text="normal or high: a high one may bypass frequency caps."
    )
    customer_id = models.UUIDField(db_index=True, help_text="The profiles customer the message is for.")
    content = models.JSONField(default=dict)
    fallback = models.JSONField(default=list, blank=True, help_text="Providers to try after the primary.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    provider = models.CharField(max_length=64, blank=True, default="", help_text="The provider that took it.")
    address = models.CharField(max_length=512, blank=True, default="")
    destination = models.CharField(
        max_length=600,
        blank=True,
        default="",
        help_text="provider@host of its only provider, known when it was queued (a hint: a fresh claim "
        "leaves it out while that breaker is open); empty when unknown or when it has a fallback.",
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    provider_message_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    queued_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "created_at"]),
            # The contact policy counts a customer's recent messages; the timeline pages them.
            models.Index(fields=["customer_id", "created_at"], name="channels_delivery_cust_created"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.id} ({self.status})"


class ContactPolicy(BaseModel):
    """The workspace's one contact policy (row id 1): frequency caps across every journey and
    channel, quiet hours in the customer's time zone, and what a high priority may bypass.
    The rules themselves are in channels.contact (pure); see docs/channels.md."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    caps = models.JSONField(
        default=list,
        blank=True,
        help_text='Rules like [{"purpose": "marketing", "channel": "*", "max": 3, "window": {"days": 7}}]. '
        'purpose/channel may be "*"; transactional messages are never capped.',
    )
    quiet_start = models.TimeField(null=True, blank=True, help_text="Local time quiet hours begin, e.g. 21:00.")
    quiet_end = models.TimeField(null=True, blank=True, help_text="Local time they end, e.g. 08:00.")
    fallback_timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA zone used when a customer has no valid `timezone` trait."
    )
    high_priority_bypasses_caps = models.BooleanField(
        default=True, help_text="A high-priority message may exceed caps (never quiet hours)."
    )

    class Meta:
        verbose_name_plural = "contact policy"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="channels_contact_policy_singleton")]

    def __str__(self) -> str:
        return "Contact policy"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from channels.contact import PolicyError, parse_caps, valid_zone

        try:
            parse_caps(self.caps)
        except PolicyError as error:
            raise ValidationError({"caps": str(error)}) from None
        if not valid_zone(self.fallback_timezone):
            raise ValidationError({"fallback_timezone": "not a known IANA time zone"})
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValidationError({"quiet_end": "set both ends of the quiet hours, or neither"})


class WebhookProvider(models.TextChoices):
    TWILIO = "twilio", "Twilio inbound SMS"
    CHAT = "chat", "Chat (Stripe-style signature)"
    POS = "pos", "Point of sale (Stripe-style signature)"
    SENDGRID = "sendgrid", "SendGrid Event Webhook (ECDSA; the secret is SendGrid's public key)"
    MAPPED = "mapped", "Any system's JSON through the source's field mapping (Stripe-style signature)"


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


class SourceMapping(BaseModel):
    """A source's field mapping from its own JSON to canonical events (channels.adapters.mapping),
    used by its `mapped` webhook and its polling feed."""

    id = models.BigAutoField(primary_key=True)
    source_id = models.UUIDField(unique=True, help_text="The profiles source the mapped events are ingested under.")
    spec = models.JSONField(help_text="See docs/channels.md, 'Mapping adapter'.")

    def __str__(self) -> str:
        return f"mapping of {self.source_id}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from channels.adapters.mapping import validate_mapping

        errors = validate_mapping(self.spec)
        if errors:
            raise ValidationError({"spec": [str(error) for error in errors]})


class PollingFeed(BaseModel):
    """A legacy HTTP endpoint Throughline pulls changes from, for a system that cannot call out.

    GET `url` with `?<cursor_param>=<cursor>`; the JSON answer holds the records (at the source
    mapping's `items` path) and the next cursor (at `next_cursor_path`). Records become events
    through the source's mapping; the cursor advances only after they are stored, and the
    records' ids deduplicate a page fetched twice."""

    id = models.BigAutoField(primary_key=True)
    source_id = models.UUIDField(unique=True)
    url = models.URLField(max_length=1000)
    interval_seconds = models.PositiveIntegerField(default=60)
    cursor_param = models.CharField(max_length=64, default="since")
    next_cursor_path = models.CharField(max_length=200, default="next_cursor")
    cursor = models.CharField(max_length=1000, blank=True, default="")
    auth_header_name = models.CharField(max_length=64, blank=True, default="Authorization")
    auth_header_encrypted = models.BinaryField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    next_poll_at = models.DateTimeField(db_index=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"feed {self.url} -> {self.source_id}"
