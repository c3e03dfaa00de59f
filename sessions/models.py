"""Durable session records: PostgreSQL holds every acknowledged write, Redis a copy for speed.

The tables keep the names they had when these models belonged to orchestration (db_table), so
the app could move without moving data (migrations: orchestration 0003, cxsessions 0001).
Profiles' customers and sources are named lazily ("profiles.Customer"): other apps import
profiles' contracts, never its models.
"""

import uuid

from django.db import models

from profiles.contracts import ChannelKind


class SessionRecord(models.Model):
    """One cross-channel session and its state document; `version` is bumped by every write."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey("profiles.Customer", on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=16, choices=ChannelKind.choices, help_text="The channel it is on now.")
    started_channel = models.CharField(max_length=16, choices=ChannelKind.choices)
    device = models.CharField(max_length=200, blank=True, default="")
    source_ids = models.JSONField(
        default=list, help_text="Sources linked to it: the one that started it and each resumer."
    )
    channels = models.JSONField(default=list, help_text="Every channel it has been on, in order.")
    user_id = models.CharField(max_length=512, blank=True, default="")
    anonymous_id = models.CharField(max_length=512, blank=True, default="")
    origin = models.CharField(max_length=8, choices=[("api", "api"), ("events", "events")], default="api")
    state = models.JSONField(default=dict, blank=True)
    version = models.PositiveBigIntegerField(default=1)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, blank=True, default="")
    outcome = models.CharField(max_length=16, blank=True, default="")
    ended_channel = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        db_table = "orchestration_session"
        indexes = [
            models.Index(fields=["customer", "-last_seen_at"], name="orch_session_customer"),
            models.Index(
                fields=["channel", "last_seen_at"], name="orch_session_active", condition=models.Q(ended_at=None)
            ),
            models.Index(fields=["started_at"], name="orch_session_started"),
        ]

    def __str__(self) -> str:
        return f"session {self.id} ({self.channel})"


class ResumeToken(models.Model):
    """A single-use handoff token. Only its SHA-256 is stored; the plain token is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(SessionRecord, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    issued_by = models.ForeignKey("profiles.Source", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey("profiles.Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "orchestration_resume_token"

    def __str__(self) -> str:
        return f"{self.prefix}… for {self.session_id}"


class ContinuationKind(models.TextChoices):
    RESUMED = "resumed"
    STARTED_OVER = "started_over"


class SessionContinuation(models.Model):
    """A customer moving from one channel to another: by resuming a session, or by starting a
    new one while a recent session on another channel was there to resume. The context
    retention KPI is resumed / (resumed + started_over)."""

    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey("profiles.Customer", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=ContinuationKind.choices)
    from_session = models.ForeignKey(SessionRecord, on_delete=models.CASCADE, related_name="+")
    to_session = models.ForeignKey(SessionRecord, on_delete=models.CASCADE, related_name="+")
    from_channel = models.CharField(max_length=16)
    to_channel = models.CharField(max_length=16)
    via = models.CharField(max_length=16, blank=True, default="", help_text="token or identity, when resumed.")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "orchestration_session_continuation"

    def __str__(self) -> str:
        return f"{self.kind}: {self.from_channel} -> {self.to_channel}"


class StaleCopy(models.Model):
    """A session whose Redis copy a committed write could neither refresh nor drop (Redis was
    unreachable): until a process settles it, every read of the session, and of its customer's
    active sessions, goes to PostgreSQL. Recorded before the write is acknowledged; deleted
    once the copy has been refreshed in Redis (sessions.store: "stale copies")."""

    session_id = models.UUIDField(primary_key=True)
    customer_id = models.UUIDField(help_text="The session's customer, whose index of active sessions is stale too.")
    since = models.DateTimeField(help_text="When the last write that left it stale recorded it.")

    class Meta:
        db_table = "sessions_stalecopy"

    def __str__(self) -> str:
        return f"stale copy of session {self.session_id} since {self.since}"
