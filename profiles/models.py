"""The canonical customer model every channel's events land in."""

import uuid

from django.db import models
from django.db.models import Q, Value

from config.core.models import BaseModel
from profiles.contracts import ChannelKind


class SchemaPolicy(models.TextChoices):
    """What ingestion does with a source's messages when a schema applies to them."""

    ENFORCE = "enforce", "enforce: quarantine violations"
    WARN = "warn", "warn: store, tagged with the violations"
    ALLOW = "allow", "allow: do not validate"


class Source(BaseModel):
    """A registered sender of events. Only the SHA-256 of its write key is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=16, choices=ChannelKind.choices)
    write_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    write_key_prefix = models.CharField(max_length=12, editable=False)
    enabled = models.BooleanField(default=True)
    identity_kinds = models.JSONField(
        default=list,
        blank=True,
        help_text='External identity kinds this source declares, e.g. ["loyalty_id"]; '
        "read from context.externalIds and traits.",
    )
    schema_policy = models.CharField(
        max_length=8, choices=SchemaPolicy.choices, default=SchemaPolicy.ALLOW, db_default=SchemaPolicy.ALLOW
    )
    # Empty: any site may use the key, as with Segment and RudderStack (a write key is public in
    # a page's source, so this is no secret; it keeps other sites from sending with it).
    allowed_origins = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text='Web origins whose pages may send with this write key, e.g. ["https://shop.example.com"]; '
        "empty allows every origin.",
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"


class Customer(BaseModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    traits = models.JSONField(default=dict, blank=True)
    # When each trait was last set (ISO 8601), and the keys set with $set_once: merging two
    # profiles keeps the newest value per key, and the first value of $set_once keys.
    trait_times = models.JSONField(default=dict, db_default={}, blank=True)
    once_keys = models.JSONField(default=list, db_default=[], blank=True)
    computed_state = models.JSONField(
        default=dict, db_default={}, blank=True, help_text="Per computed trait, the state its value is read from."
    )
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from")

    def __str__(self) -> str:
        return str(self.id)


class Identity(BaseModel):
    """One identifier of a customer: normalised value, unique per kind."""

    kind = models.CharField(max_length=64)
    value = models.CharField(max_length=512)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="identity_kind_value_uniq")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class EventType(models.TextChoices):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class Event(models.Model):
    """An accepted event. Written in bulk by the ingestion service, never one by one.

    The table is partitioned by month on received_at (config/core/partitions.py, profiles
    migration 0009): its database primary key is (id, received_at), since a partitioned table's
    unique keys must include the partition key; `id` alone stays unique (one identity sequence)
    and stays Django's primary key. Deduplication lives in EventKey, as a unique (source,
    message_id) cannot span partitions. Nothing may point at it with a database foreign key.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of their own: (source, message_id) and (customer, -timestamp, -id) lead with them
    # and serve every lookup by source or customer; a single-column copy only slowed each insert.
    # No database constraint on source either: its deferred check locked the one source row
    # (FOR KEY SHARE) once per event, at every commit. The id comes from an authenticated source,
    # and Django's PROTECT still refuses to delete a source that has events.
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    message_id = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=EventType.choices)
    name = models.CharField(max_length=200, blank=True, default="")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    channel = models.CharField(max_length=16, choices=ChannelKind.choices)
    user_id = models.CharField(max_length=512, blank=True, default="")
    anonymous_id = models.CharField(max_length=512, blank=True, default="")
    timestamp = models.DateTimeField(help_text="When it happened, corrected for the device's clock skew.")
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True, help_text="Properties, or traits for identify/group.")
    context = models.JSONField(default=dict, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="groupId, previousId, integrations.")
    # A foreign key rather than a version string: "1-0-0" alone does not say which schema, and the
    # key keeps a version that events were checked against from being deleted. Its index is
    # partial, so events of sources that do not validate cost nothing to index.
    schema_version = models.ForeignKey(
        "EventSchemaVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    schema_violations = models.JSONField(
        default=list,
        db_default=Value([], output_field=models.JSONField()),
        blank=True,
        help_text="What the schema version rejected, when the source's policy is warn.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-timestamp", "-id"], name="event_customer_time"),
            models.Index(
                fields=["schema_version"], name="event_schema_version", condition=Q(schema_version__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name} ({self.message_id})"


class QuarantinedMessage(models.Model):
    """A message that was received but not accepted, kept with the reason so nothing is lost."""

    id = models.BigAutoField(primary_key=True)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(db_index=True)
    stage = models.CharField(max_length=32, default="ingest")
    reason = models.CharField(max_length=64)
    detail = models.TextField()
    message_id = models.CharField(max_length=200, blank=True, default="")
    raw = models.JSONField(null=True, blank=True)
    raw_text = models.TextField(blank=True, default="", help_text="The raw message when it was not JSON.")
    # What a replay needs to parse the message as it was first parsed.
    call_type = models.CharField(
        max_length=16, blank=True, default="", db_default="", help_text="The call's type; empty in a batch."
    )
    defaults = models.JSONField(null=True, blank=True, help_text="The batch's sentAt, context and integrations.")
    replay_count = models.PositiveIntegerField(default=0, db_default=0)
    replayed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When a replay got it accepted.")
    # No database constraint: a foreign key cannot point at a partitioned table without its
    # partition key, and retention drops the event's partition with no row-by-row delete.
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        help_text="The event a replay made.",
    )

    class Meta:
        indexes = [models.Index(fields=["-id"], name="quarantine_open", condition=Q(resolved_at__isnull=True))]

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail[:60]}"


class EventOutbox(models.Model):
    """Events accepted but not yet routed, written in the same transaction as the event.

    Routing deletes the row in the transaction that applies the event's effects, so an event is
    routed once; the sweeper re-enqueues rows whose routing never completed.
    """

    # No database constraint, as QuarantinedMessage.event: events are partitioned. The row is
    # written in the statement that writes its event, and routing deletes it.
    event = models.OneToOneField(
        Event, primary_key=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    enqueued_at = models.DateTimeField(db_index=True)
    attempts = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"outbox:{self.event_id}"


class EventKey(models.Model):
    """The deduplication key of an accepted event: (source, messageId), kept DEDUP_WINDOW_DAYS.

    A narrow table of its own, unpartitioned, so the key is unique across the events' monthly
    partitions and outlives a dropped partition for as long as the window lasts. Ingestion
    inserts the key ON CONFLICT DO NOTHING in the statement that inserts the event, and stores
    only the events whose key went in: a concurrent duplicate waits on the key and stores nothing.
    """

    pk = models.CompositePrimaryKey("source_id", "message_id")
    # A plain id, not a foreign key: like Event.source, a checked key would lock the source row
    # once per event at commit.
    source_id = models.UUIDField()
    message_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(db_index=True)
    event_id = models.BigIntegerField(help_text="The event stored under this key (gone once its partition is).")

    def __str__(self) -> str:
        return f"{self.source_id}:{self.message_id}"


class MergeRecord(BaseModel):
    """One profile merged into another: who or what merged them, why, and what moved, so a
    support agent can see and undo it."""

    id = models.BigAutoField(primary_key=True)
    survivor = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_in")
    merged = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_out")
    reason = models.CharField(max_length=200)
    actor = models.CharField(max_length=200, help_text="'ingestion', or the API token / admin user.")
    trigger = models.JSONField(
        default=dict, blank=True, help_text="The source and messageId, when an event merged them."
    )
    identities = models.JSONField(default=list, help_text="[kind, value] pairs the merged profile held.")
    traits_before = models.JSONField(default=dict, help_text="The merged profile's traits at the time.")
    moved = models.JSONField(
        default=dict,
        blank=True,
        help_text="What an undo gives back: the merged profile's trait times, once-keys and computed "
        "state, and the survivor's own values of the traits the merge took from it, its once-keys and "
        "computed state. Empty on merges recorded before it was kept.",
    )
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.CharField(max_length=200, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.merged_id} -> {self.survivor_id}"


class MergeRefusal(BaseModel):
    """A merge that identity rules refused, with the reason."""

    id = models.BigAutoField(primary_key=True)
    customer_ids = models.JSONField()
    reason = models.TextField()
    actor = models.CharField(max_length=200)
    trigger = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.reason[:80]


class MergeBlock(BaseModel):
    """Two profiles a person separated by an unmerge: they are not merged again automatically."""

    customer_a = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    customer_b = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer_a", "customer_b"], name="merge_block_pair_uniq")]

    def __str__(self) -> str:
        return f"{self.customer_a_id} / {self.customer_b_id}"


class SchemaEventType(models.TextChoices):
    """What a schema describes: a track event's properties, identify traits, page or screen properties."""

    TRACK = "track"
    IDENTIFY = "identify"
    PAGE = "page"
    SCREEN = "screen"


class EventSchema(BaseModel):
    """The schema of one kind of message, global or for one source. An empty event name on a
    page or screen schema covers every page or screen without a more specific schema."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=16, choices=SchemaEventType.choices)
    event_name = models.CharField(max_length=200, blank=True, default="")
    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Empty: every source."
    )
    description = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["event_type", "event_name", "source"],
                condition=Q(source__isnull=False),
                name="event_schema_source_uniq",
            ),
            models.UniqueConstraint(
                fields=["event_type", "event_name"], condition=Q(source__isnull=True), name="event_schema_global_uniq"
            ),
            models.CheckConstraint(
                condition=~Q(event_type=SchemaEventType.TRACK, event_name=""), name="event_schema_track_named"
            ),
            models.CheckConstraint(
                condition=~Q(event_type=SchemaEventType.IDENTIFY) | Q(event_name=""),
                name="event_schema_identify_unnamed",
            ),
        ]

    def __str__(self) -> str:
        scope = self.source.name if self.source else "global"
        return f"{self.event_type} {self.event_name or '*'} ({scope})"


class SchemaStatus(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    DEPRECATED = "deprecated"


class EventSchemaVersion(BaseModel):
    """One SchemaVer version (MODEL-REVISION-ADDITION) of a schema: a JSON Schema (Draft 2020-12)
    document, editable only while a draft. At most one version of a schema is active."""

    id = models.BigAutoField(primary_key=True)
    schema = models.ForeignKey(EventSchema, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=32)
    model = models.PositiveIntegerField()
    revision = models.PositiveIntegerField()
    addition = models.PositiveIntegerField()
    document = models.JSONField()
    status = models.CharField(max_length=16, choices=SchemaStatus.choices, default=SchemaStatus.DRAFT)
    published_at = models.DateTimeField(null=True, blank=True)
    deprecated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["schema", "model", "revision", "addition"], name="event_schema_version_uniq"
            ),
            models.UniqueConstraint(
                fields=["schema"], condition=Q(status=SchemaStatus.ACTIVE), name="event_schema_one_active"
            ),
            models.CheckConstraint(condition=Q(model__gte=1), name="event_schema_version_model_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.schema} {self.version} [{self.status}]"


class ComputedTrait(BaseModel):
    """A trait computed from events, e.g. order_count or lifetime_value, kept up to date as
    events are routed (profiles/computed.py has the rules)."""

    class Kind(models.TextChoices):
        COUNT = "count"
        SUM = "sum"
        LAST_VALUE = "last_value"
        FIRST_SEEN = "first_seen"
        LAST_SEEN = "last_seen"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    event_name = models.CharField(max_length=200, help_text="The track event it counts.")
    property = models.CharField(
        max_length=200, blank=True, default="", help_text="For sum and last_value; $channel for the event's channel."
    )
    where = models.JSONField(default=dict, blank=True, help_text='Property equality filter, e.g. {"tier": "gold"}.')
    window_days = models.PositiveIntegerField(null=True, blank=True, help_text="Count/sum over the last N days.")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


# Consent, erasure and the privacy audit trail live in their own module (profiles/privacy).
from profiles.privacy.models import (  # noqa: E402, F401
    Consent,
    ConsentChange,
    ErasedCustomer,
    Erasure,
    ErasureTombstone,
    PrivacyAudit,
)
