"""Admin for sessions: read-only records, token revocation, and the two KPIs on the list page."""

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from sessions import selectors
from sessions.models import ResumeToken, SessionContinuation, SessionRecord


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


@admin.register(SessionRecord)
class SessionRecordAdmin(_ReadOnly):
    list_display = ("id", "customer", "channel", "started_channel", "version", "last_seen_at", "ended_at", "outcome")
    list_filter = ("channel", "started_channel", "origin", "end_reason", "outcome")
    search_fields = ("id", "user_id", "anonymous_id", "customer__id")
    show_full_result_count = False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        until = timezone.now()
        kpis = selectors.session_kpis(since=until - timedelta(days=30), until=until)
        self.message_user(
            request,
            f"Last 30 days. Context retention: {_percent(kpis.context_retention)} "
            f"({kpis.resumed} resumed, {kpis.started_over} started over). "
            f"Cross-channel completion: {_percent(kpis.cross_channel_completion)} "
            f"({kpis.completed_elsewhere} of {kpis.continued} continued sessions completed on another channel).",
            messages.INFO,
        )
        return super().changelist_view(request, extra_context)


@admin.register(ResumeToken)
class ResumeTokenAdmin(_ReadOnly):
    list_display = ("prefix", "session", "issued_by", "created_at", "expires_at", "used_at", "revoked_at")
    list_filter = ("revoked_at",)
    actions = ("revoke",)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ResumeToken]) -> None:
        count = queryset.filter(used_at=None, revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} tokens revoked.", messages.SUCCESS)


@admin.register(SessionContinuation)
class SessionContinuationAdmin(_ReadOnly):
    list_display = ("created_at", "kind", "from_channel", "to_channel", "via", "customer")
    list_filter = ("kind", "from_channel", "to_channel", "via")
