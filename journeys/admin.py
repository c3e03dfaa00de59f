"""Admin for journeys: edit drafts (validated, errors pointing at the bad step), publish and
archive through the services, compare a version with the one before it, simulate a version,
count how customers went through each journey, and read the history.

No logic of its own: validation is journeys.definition / journeys.conditions, writes are
journeys.services, simulation is journeys.simulation.
"""

import difflib
import json
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from config.core.errors import ApplicationError
from journeys.definition import validate_definition
from journeys.models import (
    Decision,
    Enrollment,
    EnrollmentStatus,
    Journey,
    JourneyVersion,
    Segment,
    SegmentMembership,
    StepRun,
    Timer,
    VersionStatus,
)
from journeys.segments import validate_segment_condition
from journeys.services import (
    journey_publish,
    version_archive,
    version_create_draft,
    version_migration_preview,
    version_update_draft,
)
from journeys.simulation import SimulationError, simulate

SIMULATE_DEFAULT_SPAN = timedelta(days=7)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def definition_diff(old: Any, new: Any, *, old_name: str, new_name: str) -> list[str]:
    """A unified diff of two definitions, pretty-printed with sorted keys so that only real
    changes show."""
    return list(
        difflib.unified_diff(
            pretty(old).splitlines(), pretty(new).splitlines(), fromfile=old_name, tofile=new_name, lineterm=""
        )
    )


def _errors_at(errors: list[Any]) -> list[str]:
    return [f"{error.path or '/'}: {error.message}" for error in errors]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Segments -----------------------------------------------------------------------------------


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ("key", "name", "description", "condition", "enabled")
        widgets = {"condition": forms.Textarea(attrs={"rows": 12, "cols": 90, "class": "vLargeTextField"})}

    def clean_condition(self) -> Any:
        condition = self.cleaned_data["condition"]
        problems = validate_segment_condition(condition)
        if problems:
            raise ValidationError(_errors_at(problems))
        return condition


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("key", "name", "enabled", "members", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("key", "name")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Segment]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def members(self, segment: Segment) -> int:
        return int(getattr(segment, "member_count", 0))


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(ReadOnlyAdmin):
    list_display = ("segment", "customer_id", "entered_at")
    list_filter = ("segment",)
    search_fields = ("customer_id",)


# --- Journeys and versions ------------------------------------------------------------------


def _counted(queryset: QuerySet[Journey]) -> QuerySet[Journey]:
    """Per journey: customers entered, still active, completed, exited, converted, failed."""
    return queryset.annotate(
        n_entered=Count("enrollments"),
        n_active=Count("enrollments", filter=Q(enrollments__status=EnrollmentStatus.ACTIVE)),
        n_completed=Count("enrollments", filter=Q(enrollments__status=EnrollmentStatus.COMPLETED)),
        n_exited=Count("enrollments", filter=Q(enrollments__status=EnrollmentStatus.EXITED)),
        n_converted=Count("enrollments", filter=Q(enrollments__converted=True)),
        n_failed=Count("enrollments", filter=Q(enrollments__status=EnrollmentStatus.FAILED)),
    )


class JourneyVersionInline(admin.TabularInline):
    model = JourneyVersion
    fields = ("number", "status", "published_at", "archived_at", "changes")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-number",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="changes")
    def changes(self, version: JourneyVersion) -> str:
        url = reverse("admin:journeys_journeyversion_diff", args=[version.pk])
        return format_html('<a href="{}">diff with v{}</a>', url, version.number - 1) if version.number > 1 else "-"


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "name",
        "published",
        "entered",
        "active",
        "completed",
        "exited",
        "converted",
        "failed",
    )
    search_fields = ("key", "name")
    readonly_fields = ("counts",)
    inlines = (JourneyVersionInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Journey]:
        return _counted(super().get_queryset(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Journey | None = None) -> tuple[str, ...]:
        return ("key", "counts") if obj else ()

    def get_fields(self, request: HttpRequest, obj: Journey | None = None) -> tuple[str, ...]:
        return ("key", "name", "description", "counts") if obj else ("key", "name", "description")

    @admin.display(description="published version")
    def published(self, journey: Journey) -> str:
        version = journey.versions.filter(status=VersionStatus.PUBLISHED).first()
        return f"v{version.number}" if version else "-"

    @admin.display(description="customers")
    def counts(self, journey: Journey) -> str:
        row = _counted(Journey.objects.filter(pk=journey.pk)).get()
        return format_html_join(
            ", ",
            "{}: {}",
            (
                (name, getattr(row, f"n_{name}"))
                for name in ("entered", "active", "completed", "exited", "converted", "failed")
            ),
        )

    @admin.display(ordering="n_entered")
    def entered(self, journey: Journey) -> int:
        return int(getattr(journey, "n_entered", 0))

    @admin.display(ordering="n_active")
    def active(self, journey: Journey) -> int:
        return int(getattr(journey, "n_active", 0))

    @admin.display(ordering="n_completed")
    def completed(self, journey: Journey) -> int:
        return int(getattr(journey, "n_completed", 0))

    @admin.display(ordering="n_exited")
    def exited(self, journey: Journey) -> int:
        return int(getattr(journey, "n_exited", 0))

    @admin.display(ordering="n_converted")
    def converted(self, journey: Journey) -> int:
        return int(getattr(journey, "n_converted", 0))

    @admin.display(ordering="n_failed")
    def failed(self, journey: Journey) -> int:
        return int(getattr(journey, "n_failed", 0))


class JourneyVersionForm(forms.ModelForm):
    class Meta:
        model = JourneyVersion
        fields = ("journey", "definition", "migration_map")
        widgets = {
            "definition": forms.Textarea(attrs={"rows": 30, "cols": 100, "class": "vLargeTextField"}),
            "migration_map": forms.Textarea(attrs={"rows": 4, "cols": 100, "class": "vLargeTextField"}),
        }
        help_texts = {
            "definition": "JSON: trigger, entry, exit, start, steps (see docs/journeys.md).",
            "migration_map": 'Optional JSON object, old step id -> new step id, e.g. {"remind_sms": "remind"}.',
        }

    def clean_definition(self) -> Any:
        definition = self.cleaned_data["definition"]
        problems = validate_definition(definition)
        if problems:
            raise ValidationError(_errors_at(problems))
        return definition

    def clean_migration_map(self) -> Any:
        mapping = self.cleaned_data.get("migration_map")
        if mapping in (None, {}, ""):
            return None
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ValidationError("a JSON object mapping old step ids to new step ids")
        definition = self.cleaned_data.get("definition")
        if isinstance(definition, dict):
            steps = definition.get("steps") or {}
            unknown = sorted(v for v in mapping.values() if v not in steps)
            if unknown:
                raise ValidationError(f"no step named {', '.join(map(repr, unknown))} in this version")
        return mapping


class SimulateForm(forms.Form):
    profile = forms.JSONField(
        required=False,
        initial={"traits": {"first_name": "Ann", "timezone": "Europe/Paris"}, "segments": [], "consent": {}},
        widget=forms.Textarea(attrs={"rows": 8, "cols": 90}),
        help_text=(
            "The starting profile: traits, computed, segments (keys), consent ({purpose: {channel: bool}}), "
            "session, and unavailable ({channel: why}) for channels with no address."
        ),
    )
    events = forms.JSONField(
        initial=[],
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "cols": 90}),
        help_text='Timestamped events, e.g. [{"event": "Cart Abandoned", "at": "2026-11-23T10:00:00Z"}].',
    )
    start_at = forms.DateTimeField(
        required=False, help_text="Virtual clock start (default: the first event, else now)."
    )
    until = forms.DateTimeField(required=False, help_text="Run the clock until (default: 7 days after the start).")

    def clean_profile(self) -> Any:
        profile = self.cleaned_data.get("profile") or {}
        if not isinstance(profile, dict):
            raise ValidationError("a JSON object")
        return profile

    def clean_events(self) -> Any:
        events = self.cleaned_data.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ValidationError("a JSON list of event objects")
        return events


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):  # the object's own JSON shape (with its totals) first
        return _jsonable(value.as_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@admin.register(JourneyVersion)
class JourneyVersionAdmin(admin.ModelAdmin):
    form = JourneyVersionForm
    list_display = ("journey", "number", "status", "published_at", "archived_at", "updated_at")
    list_filter = ("status", "journey")
    search_fields = ("journey__key", "journey__name")
    actions = ("publish", "archive")
    ordering = ("journey__key", "-number")

    def get_fields(self, request: HttpRequest, obj: JourneyVersion | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("journey", "definition", "migration_map")
        if obj.status == VersionStatus.DRAFT:
            return (
                "journey",
                "number",
                "status",
                "definition",
                "migration_map",
                "migration_preview",
                "tools",
            )
        return (
            "journey",
            "number",
            "status",
            "definition_pretty",
            "migration_map",
            "published_at",
            "archived_at",
            "tools",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: JourneyVersion | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        if obj.status == VersionStatus.DRAFT:
            return ("journey", "number", "status", "migration_preview", "tools")
        # Published and archived versions are history: customers ran (or run) on them as they are.
        return (
            "journey",
            "number",
            "status",
            "definition_pretty",
            "migration_map",
            "published_at",
            "archived_at",
            "tools",
        )

    def has_change_permission(self, request: HttpRequest, obj: JourneyVersion | None = None) -> bool:
        # Published and archived versions are shown, never saved: customers run on them as they are.
        return super().has_change_permission(request, obj) and (obj is None or obj.status == VersionStatus.DRAFT)

    def has_delete_permission(self, request: HttpRequest, obj: JourneyVersion | None = None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == VersionStatus.DRAFT)

    def save_model(self, request: HttpRequest, obj: JourneyVersion, form: Any, change: bool) -> None:
        if change:
            saved = version_update_draft(version=obj, definition=obj.definition)
        else:
            saved = version_create_draft(journey=obj.journey, definition=obj.definition)
            obj.pk, obj.number, obj.status = saved.pk, saved.number, saved.status
            obj._state.adding = False
        if saved.migration_map != obj.migration_map:
            saved.migration_map = obj.migration_map
            saved.save(update_fields=["migration_map", "updated_at"])

    @admin.display(description="definition")
    def definition_pretty(self, obj: JourneyVersion) -> str:
        return format_html("<pre>{}</pre>", pretty(obj.definition))

    @admin.display(description="who would move if published with this map")
    def migration_preview(self, obj: JourneyVersion) -> str:
        if not obj.migration_map:
            return "no migration map: customers inside the journey stay on their version"
        try:
            preview = version_migration_preview(version=obj)
        except ApplicationError as error:
            return f"no preview: {error.detail}"
        return format_html("<pre>{}</pre>", pretty(_jsonable(preview)))

    @admin.display(description="tools")
    def tools(self, obj: JourneyVersion) -> str:
        links = [(reverse("admin:journeys_journeyversion_simulate", args=[obj.pk]), "Simulate")]
        if obj.number > 1:
            links.append((reverse("admin:journeys_journeyversion_diff", args=[obj.pk]), f"Diff with v{obj.number - 1}"))
        return format_html_join(" | ", '<a href="{}">{}</a>', links)

    # --- actions -------------------------------------------------------------------------------

    @admin.action(description="Publish the selected drafts (validated; applies their migration map)")
    def publish(self, request: HttpRequest, queryset: QuerySet[JourneyVersion]) -> None:
        for version in queryset.select_related("journey").order_by("journey__key", "number"):
            problems = validate_definition(version.definition)
            if problems:
                listed = "; ".join(_errors_at(problems))
                self.message_user(
                    request, f"{version.journey.key} v{version.number} not published: {listed}", messages.ERROR
                )
                continue
            try:
                journey_publish(version=version, migration_map=version.migration_map)
            except ApplicationError as error:
                self.message_user(
                    request, f"{version.journey.key} v{version.number} not published: {error.detail}", messages.ERROR
                )
                continue
            self.message_user(request, f"{version.journey.key} v{version.number} published", messages.SUCCESS)

    @admin.action(description="Archive the selected versions (customers on them finish on them)")
    def archive(self, request: HttpRequest, queryset: QuerySet[JourneyVersion]) -> None:
        for version in queryset.select_related("journey").order_by("journey__key", "number"):
            try:
                version_archive(version=version)
            except ApplicationError as error:
                self.message_user(
                    request, f"{version.journey.key} v{version.number} not archived: {error.detail}", messages.ERROR
                )
                continue
            self.message_user(request, f"{version.journey.key} v{version.number} archived", messages.SUCCESS)

    # --- the diff and simulate pages -------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<uuid:version_id>/diff/",
                self.admin_site.admin_view(self.diff_view),
                name="journeys_journeyversion_diff",
            ),
            path(
                "<uuid:version_id>/simulate/",
                self.admin_site.admin_view(self.simulate_view),
                name="journeys_journeyversion_simulate",
            ),
        ]
        return own + super().get_urls()

    def diff_view(self, request: HttpRequest, version_id: Any) -> HttpResponse:
        version = get_object_or_404(JourneyVersion.objects.select_related("journey"), pk=version_id)
        previous = (
            JourneyVersion.objects.filter(journey=version.journey, number__lt=version.number)
            .order_by("-number")
            .first()
        )
        lines = (
            definition_diff(
                previous.definition,
                version.definition,
                old_name=f"v{previous.number} ({previous.status})",
                new_name=f"v{version.number} ({version.status})",
            )
            if previous
            else []
        )
        history = version.journey.versions.order_by("-number")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{version.journey.name}: v{version.number} against the version before it",
            "version": version,
            "previous": previous,
            "lines": [(_line_class(line), line) for line in lines],
            "history": history,
        }
        return TemplateResponse(request, "admin/journeys/journeyversion/diff.html", context)

    def simulate_view(self, request: HttpRequest, version_id: Any) -> HttpResponse:
        version = get_object_or_404(JourneyVersion.objects.select_related("journey"), pk=version_id)
        result: Any = None
        error: str | None = None
        form = SimulateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            start_at = data.get("start_at") or _first_event_time(data["events"]) or timezone.now()
            until = data.get("until") or start_at + SIMULATE_DEFAULT_SPAN
            try:
                outcome = simulate(version.definition, data["profile"], data["events"], start_at, until)
            except SimulationError as exc:
                error = f"{exc.path}: {exc.message}"
            except ValueError as exc:
                error = str(exc)
            else:
                result = _jsonable(outcome)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Simulate {version.journey.name} v{version.number}",
            "version": version,
            "form": form,
            "result": result,
            "result_json": pretty(result) if result is not None else "",
            "path": (result or {}).get("path") if isinstance(result, dict) else None,
            "messages_sent": (result or {}).get("messages") if isinstance(result, dict) else None,
            "error": error,
        }
        return TemplateResponse(request, "admin/journeys/journeyversion/simulate.html", context)


def _first_event_time(events: list[dict[str, Any]]) -> datetime | None:
    times = []
    for event in events:
        raw = event.get("at") or event.get("timestamp")
        if isinstance(raw, str):
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                continue
            times.append(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    return min(times) if times else None


def _line_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "added"
    if line.startswith("-"):
        return "removed"
    return ""


# --- What happened: read-only ---------------------------------------------------------------


class StepRunInline(admin.TabularInline):
    model = StepRun
    fields = ("at", "step", "kind", "visit", "outcome", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin):
    list_display = ("journey", "customer_id", "version", "status", "step", "converted", "entered_at", "ended_at")
    list_filter = ("status", "converted", "journey")
    search_fields = ("customer_id",)
    inlines = (StepRunInline,)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing an enrollment shows its history inline; nothing is editable.
        return False


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ("key", "step", "kind", "outcome", "at")
    list_filter = ("kind", "outcome")
    search_fields = ("key",)


@admin.register(Timer)
class TimerAdmin(ReadOnlyAdmin):
    list_display = ("enrollment", "step", "kind", "due_at", "fired_at")
    list_filter = ("kind",)


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ("id", "placement", "customer_id", "route", "degraded", "at")
    list_filter = ("placement", "degraded")
    search_fields = ("customer_id", "id")
    fields = ("id", "placement", "customer_id", "version", "at", "degraded", "result", "why")
    readonly_fields = fields

    @admin.display(description="route")
    def route(self, decision: Decision) -> str:
        return str((decision.result or {}).get("route"))

    @admin.display(description="why")
    def why(self, decision: Decision) -> str:
        return format_html("<pre>{}</pre>", pretty(decision.explanation))
