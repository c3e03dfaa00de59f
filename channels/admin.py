from django.contrib import admin
from django.http import HttpRequest

from channels.models import Delivery, WebhookSecret


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "channel", "status", "provider", "attempts", "last_error", "queued_at", "finished_at"]
    list_filter = ["status", "channel", "provider"]
    search_fields = ["idempotency_key", "provider_message_id", "customer_id"]
    readonly_fields = [field.name for field in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WebhookSecret)
class WebhookSecretAdmin(admin.ModelAdmin):
    """The secret itself is never displayed (secret_encrypted is not editable, so not shown)."""

    list_display = ["source_id", "provider", "created_at", "updated_at"]
    readonly_fields = ["source_id", "provider", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
