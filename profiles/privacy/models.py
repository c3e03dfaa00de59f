"""Consent, erasure and the privacy audit trail. Registered under the profiles app.

Consent is kept twice on purpose: `ConsentChange` is the append-only history (evidence of what a
person chose, when, and through what), `Consent` the current state per customer, purpose and
channel, maintained with each change. Delivery asks "may I send?" at send time for many
customers at once; a unique-index lookup on the current state answers that without scanning
history, and the rule "the latest choice by the time it was made wins" is applied once, when a
change is written, instead of on every read.
"""

from django.db import models
from django.db.models import Q

from profiles.models import Customer, Source

# The channel of a consent that covers every channel of its purpose (a cookie banner's
# "Analytics: yes", Segment's categoryPreferences).
ANY_CHANNEL = "*"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted"
    DENIED = "denied"


class ConsentOrigin(models.TextChoices):
    API = "api", "management API"
    IDENTIFY_TRAIT = "identify_trait", "identify trait"
    CONTEXT = "context", "event context"
    WEBHOOK = "webhook", "channel webhook"
    ADMIN = "admin", "admin"


class ConsentChange(models.Model):
    """One consent choice as received. Append-only: never updated, deleted only by an erase."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by consentchange_customer_time, which leads with it.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consent_changes", db_index=False)
    purpose = models.CharField(max_length=64)
    channel = models.CharField(max_length=32, help_text='A channel, or "*" for every channel.')
    status = models.CharField(max_length=8, choices=ConsentStatus.choices)
    changed_at = models.DateTimeField(help_text="When the person made the choice (the event's timestamp).")
    recorded_at = models.DateTimeField(help_text="When Throughline stored it.")
    origin = models.CharField(max_length=16, choices=ConsentOrigin.choices)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_label = models.CharField(
        max_length=200, blank=True, default="", help_text="Where it was captured, e.g. preference-center."
    )
    actor = models.CharField(max_length=200, blank=True, default="", help_text="API token, admin user or ingestion.")
    event_id = models.BigIntegerField(null=True, blank=True, help_text="The event that carried it, if any.")
    applied = models.BooleanField(
        default=True, help_text="False when a later choice was already known: kept as history, not current."
    )

    class Meta:
        indexes = [models.Index(fields=["customer", "-changed_at", "-id"], name="consentchange_customer_time")]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "purpose", "channel"],
                condition=Q(event_id__isnull=False),
                name="consentchange_event_uniq",
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose}/{self.channel}: {self.status}"


class Consent(models.Model):
    """The current consent of a customer for a purpose and channel: its latest change by changed_at."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by consent_customer_purpose_uniq, which leads with it.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consents", db_index=False)
    purpose = models.CharField(max_length=64)
    channel = models.CharField(max_length=32)
    status = models.CharField(max_length=8, choices=ConsentStatus.choices)
    changed_at = models.DateTimeField()
    origin = models.CharField(max_length=16, choices=ConsentOrigin.choices)
    change_id = models.BigIntegerField(help_text="The ConsentChange this state comes from.")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "purpose", "channel"], name="consent_customer_purpose_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.purpose}/{self.channel}: {self.status}"


class PrivacyAction(models.TextChoices):
    EXPORT = "export"
    ERASE = "erase"
    CONSENT_SET = "consent_set"
    SUPPRESSION_LIFT = "suppression_lift"


class PrivacyAudit(models.Model):
    """Who did what to whose data, and when. Holds the customer's id, never their identifiers,
    so it outlives an erase without keeping the person."""

    id = models.BigAutoField(primary_key=True)
    action = models.CharField(max_length=32, choices=PrivacyAction.choices)
    actor = models.CharField(max_length=200, help_text="token:<name>, admin:<user> or command:<user>.")
    customer_id = models.UUIDField(db_index=True)
    at = models.DateTimeField(db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.action} {self.customer_id} by {self.actor}"


class Erasure(models.Model):
    """An erase request carried out: which profiles went, what was deleted, and whether later
    events with the person's identifiers are suppressed."""

    id = models.BigAutoField(primary_key=True)
    customer_id = models.UUIDField(help_text="The profile the request named.")
    customer_ids = models.JSONField(default=list, help_text="Every profile erased: the survivor and those merged in.")
    suppress = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=200)
    erased_at = models.DateTimeField()
    deleted = models.JSONField(default=dict, help_text="Rows deleted, per kind.")

    def __str__(self) -> str:
        return f"erasure {self.id} of {self.customer_id}"


class ErasedCustomer(models.Model):
    """Every customer id an erasure removed, so asking again by any of them answers the same."""

    customer_id = models.UUIDField(primary_key=True)
    erasure = models.ForeignKey(Erasure, on_delete=models.CASCADE, related_name="customers")

    def __str__(self) -> str:
        return str(self.customer_id)


class ErasureTombstone(models.Model):
    """A keyed hash of one erased identifier (kind:value). Lets ingestion recognise the person
    again without keeping who they were."""

    key_hash = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=64)
    erasure = models.ForeignKey(Erasure, on_delete=models.CASCADE, related_name="tombstones")
    suppress = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind}:{self.key_hash[:12]}…"
