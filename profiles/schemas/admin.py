"""Admin for the schema registry, and the quarantine's replay action. Imported by profiles/admin.py."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.core.errors import ApplicationError
from profiles.models import EventSchema, EventSchemaVersion, QuarantinedMessage, SchemaStatus
from profiles.schemas import services
from profiles.schemas.compat import breaking_changes
from profiles.schemas.documents import document_problem
from profiles.schemas.quarantine import MAX_REPLAY, quarantine_replay
from profiles.schemas.schemaver import VersionError, parse_version


def _error_text(error: ApplicationError) -> str:
    changes = error.extra.get("breaking_changes") or []
    listed = "".join(f" [{c['rule']} at {c['path'] or '/'}: {c['detail']}]" for c in changes)
    return f"{error.detail}{listed}"


class EventSchemaVersionInline(admin.TabularInline):
    model = EventSchemaVersion
    fields = ("version", "status", "published_at", "deprecated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-model", "-revision", "-addition")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EventSchema)
class EventSchemaAdmin(admin.ModelAdmin):
    list_display = ("event_type", "event_name", "source", "active_version", "created_at")
    list_filter = ("event_type",)
    search_fields = ("event_name", "description")
    inlines = (EventSchemaVersionInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: EventSchema | None = None) -> tuple[str, ...]:
        # What a schema applies to is fixed once it exists: its versions were written for it.
        return ("event_type", "event_name", "source", "created_at") if obj else ()

    @admin.display(description="active version")
    def active_version(self, schema: EventSchema) -> str:
        active = schema.versions.filter(status=SchemaStatus.ACTIVE).first()
        return active.version if active else "-"


class EventSchemaVersionForm(forms.ModelForm):
    class Meta:
        model = EventSchemaVersion
        fields = ("schema", "version", "document")

    def clean_version(self) -> str:
        try:
            return str(parse_version(self.cleaned_data["version"]))
        except VersionError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_document(self) -> Any:
        document = self.cleaned_data["document"]
        problem = document_problem(document)
        if problem is not None:
            raise forms.ValidationError(problem)
        return document

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        schema, version = cleaned.get("schema"), cleaned.get("version")
        if self.instance.pk is None and schema and version and schema.versions.filter(version=version).exists():
            self.add_error("version", f"version {version} of this schema exists")
        return cleaned


@admin.register(EventSchemaVersion)
class EventSchemaVersionAdmin(admin.ModelAdmin):
    form = EventSchemaVersionForm
    list_display = ("schema", "version", "status", "published_at", "deprecated_at")
    list_filter = ("status", "schema__event_type")
    search_fields = ("schema__event_name", "version")
    actions = ("publish", "deprecate")

    def get_fields(self, request: HttpRequest, obj: EventSchemaVersion | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("schema", "version", "document")
        return ("schema", "version", "status", "document", "compatibility", "published_at", "deprecated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: EventSchemaVersion | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        fixed = ("schema", "version", "status", "compatibility", "published_at", "deprecated_at")
        return fixed if obj.status == SchemaStatus.DRAFT else (*fixed, "document")

    @admin.display(description="compatibility with the active version")
    def compatibility(self, obj: EventSchemaVersion) -> str:
        if obj.status != SchemaStatus.DRAFT:
            return "-"
        active = obj.schema.versions.filter(status=SchemaStatus.ACTIVE).first()
        if active is None:
            return "no active version to compare with"
        changes = breaking_changes(active.document, obj.document)
        if not changes:
            return f"accepts everything {active.version} accepts: may be published as an ADDITION"
        listed = "; ".join(f"{c.rule} at {c.path or '/'}: {c.detail}" for c in changes)
        return f"breaks {active.version} (needs a REVISION or MODEL bump): {listed}"

    def has_delete_permission(self, request: HttpRequest, obj: EventSchemaVersion | None = None) -> bool:
        return obj is None or obj.status == SchemaStatus.DRAFT

    def save_model(self, request: HttpRequest, obj: EventSchemaVersion, form: Any, change: bool) -> None:
        try:
            if not change:
                saved = services.event_schema_version_create(
                    schema=obj.schema, version=obj.version, document=obj.document
                )
                obj.pk, obj.model, obj.revision, obj.addition = saved.pk, saved.model, saved.revision, saved.addition
            elif "document" in form.changed_data:
                services.event_schema_version_update(version=obj, document=obj.document)
        except ApplicationError as error:
            # Published by someone else since the form was shown, or created twice at once.
            self.message_user(request, f"not saved: {error.detail}", messages.ERROR)

    @admin.action(description="Publish the selected drafts (checks compatibility)")
    def publish(self, request: HttpRequest, queryset: QuerySet[EventSchemaVersion]) -> None:
        for row in queryset.select_related("schema").order_by("model", "revision", "addition"):
            try:
                result = services.event_schema_version_publish(version=row)
            except ApplicationError as error:
                self.message_user(request, f"{row}: not published: {_error_text(error)}", messages.ERROR)
                continue
            bump = f" as a {result.bump.upper()}" if result.bump else ""
            self.message_user(request, f"{row.schema} {row.version} published{bump}", messages.SUCCESS)

    @admin.action(description="Deprecate the selected active versions")
    def deprecate(self, request: HttpRequest, queryset: QuerySet[EventSchemaVersion]) -> None:
        for row in queryset.select_related("schema"):
            try:
                services.event_schema_version_deprecate(version=row)
            except ApplicationError as error:
                self.message_user(request, f"{row}: {error.detail}", messages.ERROR)
                continue
            self.message_user(request, f"{row.schema} {row.version} deprecated", messages.SUCCESS)


class QuarantineStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved by a replay")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[QuarantinedMessage]) -> QuerySet[QuarantinedMessage]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.action(description="Replay: submit to ingestion again (original messageId and times)")
def replay_quarantined(modeladmin: Any, request: HttpRequest, queryset: QuerySet[QuarantinedMessage]) -> None:
    ids = list(queryset.order_by("id").values_list("id", flat=True)[:MAX_REPLAY])
    report = quarantine_replay(ids=ids, limit=MAX_REPLAY)
    modeladmin.message_user(
        request,
        f"{report.count('accepted')} accepted, {report.count('quarantined')} rejected again, "
        f"{report.count('skipped')} skipped",
        messages.SUCCESS if not report.count("quarantined") else messages.WARNING,
    )
    for result in report.results:
        if result.outcome != "accepted":
            modeladmin.message_user(request, f"#{result.id} {result.outcome}: {result.reason}", messages.WARNING)
