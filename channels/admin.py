from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from channels.models import ContactPolicy, Delivery, PollingFeed, SourceMapping, WebhookSecret
from channels.selectors import contact_policy_forget
from channels.senders.console import content_text


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "channel", "status", "provider", "attempts", "last_error", "queued_at", "finished_at"]
    list_filter = ["status", "channel", "provider"]
    search_fields = ["idempotency_key", "provider_message_id", "customer_id"]
    readonly_fields = [field.name for field in Delivery._meta.fields]
    # The message as it reads (content_text), under the stored JSON.
    readonly_fields.insert(readonly_fields.index("content") + 1, "message")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Message")
    def message(self, obj: Delivery) -> SafeString:
        return format_html('<pre style="margin: 0; white-space: pre-wrap">{}</pre>', content_text(obj.content))


@admin.register(WebhookSecret)
class WebhookSecretAdmin(admin.ModelAdmin):
    """The secret itself is never displayed (secret_encrypted is not editable, so not shown)."""

    list_display = ["source_id", "provider", "created_at", "updated_at"]
    readonly_fields = ["source_id", "provider", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ContactPolicy)
class ContactPolicyAdmin(admin.ModelAdmin):
    """The one workspace-wide row; the model's clean() validates caps and the fallback zone."""

    list_display = ["__str__", "quiet_start", "quiet_end", "fallback_timezone", "updated_at"]
    fields = ["caps", "quiet_start", "quiet_end", "fallback_timezone", "high_priority_bypasses_caps"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ContactPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: ContactPolicy | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ContactPolicy, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        contact_policy_forget()


@admin.register(SourceMapping)
class SourceMappingAdmin(admin.ModelAdmin):
    """The model's clean() validates the mapping and names the faulty part."""

    list_display = ["source_id", "updated_at"]
    search_fields = ["source_id"]


@admin.register(PollingFeed)
class PollingFeedAdmin(admin.ModelAdmin):
    """The auth header's value is set through the service (stored encrypted), never shown."""

    list_display = ["url", "source_id", "enabled", "interval_seconds", "cursor", "last_polled_at", "last_error"]
    list_filter = ["enabled"]
    readonly_fields = ["cursor", "last_polled_at", "last_error"]
