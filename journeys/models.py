"""Journeys: segments, journey definitions and their versions, enrollments, their history and
their durable timers.

A journey's behaviour is its version's `definition` (JSON, defined by
journeys/definition/schema.json); the rows here are the state of customers moving through it.
Customers are referenced by id without a foreign key to profiles: a merge re-points them
through journeys' own service, and an erase deletes them through the privacy hook.
"""

import uuid

from django.db import models
from django.db.models import Q

from config.core.models import BaseModel


class Segment(BaseModel):
    """A named condition over a customer; membership is kept as events arrive."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.SlugField(max_length=100, unique=True, help_text="Used in conditions and triggers.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    condition = models.JSONField(help_text="A condition in the journeys condition language.")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.key


class SegmentMembership(models.Model):
    """A customer currently in a segment. Leaving deletes the row (and emits `Segment Exited`)."""

    id = models.BigAutoField(primary_key=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    customer_id = models.UUIDField()
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "customer_id"], name="segment_member_uniq")]
        indexes = [models.Index(fields=["customer_id"], name="segment_member_customer")]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.customer_id}"


class Journey(BaseModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class JourneyVersion(BaseModel):
    """One version of a journey. Only drafts are edited; at most one version is published."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    definition = models.JSONField()
    migration_map = models.JSONField(
        null=True, blank=True, help_text="Old step id -> new step id, applied to waiting customers on publish."
    )
    published_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "number"], name="journey_version_number_uniq"),
            models.UniqueConstraint(
                fields=["journey"], condition=Q(status="published"), name="journey_one_published_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id} v{self.number} ({self.status})"


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active"  # running a step, or waiting on a timer or an event
    COMPLETED = "completed"  # reached an exit step
    EXITED = "exited"  # left through the journey's exit criteria
    FAILED = "failed"  # a step failed for good


class Enrollment(BaseModel):
    """A customer's one pass through a journey, on the version they entered with."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments")
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="enrollments")
    customer_id = models.UUIDField()
    status = models.CharField(max_length=16, choices=EnrollmentStatus.choices, default=EnrollmentStatus.ACTIVE)
    step = models.CharField(max_length=100, help_text="The step the customer is at.")
    visit = models.PositiveIntegerField(default=1, help_text="How many times this step was entered.")
    waiting_for = models.JSONField(
        null=True, blank=True, help_text="What the current step waits on: an event name and condition, or an outcome."
    )
    state = models.JSONField(default=dict, blank=True, help_text="Trigger event, message attempts, cohort.")
    trigger_event_id = models.BigIntegerField(null=True, blank=True)
    entered_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    converted = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "customer_id"], condition=Q(status="active"), name="enrollment_one_active"
            )
        ]
        indexes = [
            models.Index(fields=["customer_id", "status"], name="enrollment_customer_status"),
            models.Index(fields=["journey", "status"], name="enrollment_journey_status"),
        ]

    def __str__(self) -> str:
        return f"{self.journey_id}:{self.customer_id}@{self.step}"


class StepRun(models.Model):
    """The history of an enrollment: one row per step execution, with what it saw and why it
    went where it went. `key` (enrollment, step, visit) makes a redelivered task or a double
    tick a no-op."""

    id = models.BigAutoField(primary_key=True)
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="history")
    key = models.CharField(max_length=200, unique=True)
    step = models.CharField(max_length=100)
    kind = models.CharField(max_length=32)
    visit = models.PositiveIntegerField()
    at = models.DateTimeField()
    outcome = models.CharField(max_length=32, help_text="e.g. next, branch, sent, held, skipped, waiting, failed.")
    detail = models.JSONField(default=dict, blank=True, help_text="Inputs seen, branch chosen and why, message ids.")

    class Meta:
        indexes = [models.Index(fields=["enrollment", "id"], name="steprun_enrollment")]

    def __str__(self) -> str:
        return self.key


class Timer(models.Model):
    """A durable timer: the periodic tick claims due ones with FOR UPDATE SKIP LOCKED."""

    id = models.BigAutoField(primary_key=True)
    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="timers")
    step = models.CharField(max_length=100)
    visit = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, help_text="wait, event_timeout, outcome_timeout, hold.")
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step", "visit", "kind"], name="timer_once_per_visit")
        ]
        indexes = [models.Index(fields=["due_at"], condition=Q(fired_at__isnull=True), name="timer_due")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.enrollment_id}@{self.due_at}"


class Decision(models.Model):
    """One answer of the decide API, kept so the history can explain it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    placement = models.CharField(max_length=100)
    customer_id = models.UUIDField(null=True, blank=True)
    version = models.ForeignKey(JourneyVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField()
    degraded = models.BooleanField(default=False)
    result = models.JSONField()
    explanation = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["customer_id", "at"], name="decision_customer_at")]

    def __str__(self) -> str:
        return f"{self.placement}:{self.id}"
