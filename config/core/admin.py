from django.contrib import admin
from django.http import HttpRequest

from config.core.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = ("name", "prefix", "revoked_at", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The secret is shown once, by `manage.py create_api_token`; the admin cannot show it.
        return False
