"""Privacy in the admin: erasing customers (with a confirmation page), and read-only lists of
consent history, erasures and the privacy audit trail."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from config.core.errors import ApplicationError
from profiles.models import Customer
from profiles.privacy.models import ConsentChange, Erasure, PrivacyAudit
from profiles.privacy.services import customer_erase


def admin_actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class EraseCustomersMixin(admin.ModelAdmin):
    """Adds "Erase the selected customers" to a Customer admin, whatever its own `actions`."""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = dict(super().get_actions(request))
        if request.user.has_perm("profiles.delete_customer"):
            action = EraseCustomersMixin.erase_customers
            actions["erase_customers"] = (action, "erase_customers", getattr(action, "short_description", ""))
        return actions

    @admin.action(description="Erase the selected customers (everything held about them)")
    def erase_customers(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/profiles/customer/erase_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Erase customers",
                    "customers": list(queryset),
                    "opts": self.model._meta,
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                },
            )
        suppress = request.POST.get("suppress") == "on"
        reason = request.POST.get("reason", "")[:2000]
        erased = 0
        for customer in queryset:
            try:
                customer_erase(customer_id=customer.id, suppress=suppress, reason=reason, actor=admin_actor(request))
            except ApplicationError as error:
                self.message_user(request, f"{customer.id}: {error.detail}", messages.ERROR)
                continue
            erased += 1
        suppressed = " and suppressed their identifiers" if suppress else ""
        self.message_user(request, f"Erased {erased} customers{suppressed}.")
        return None


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ConsentChange)
class ConsentChangeAdmin(ReadOnly):
    list_display = ("customer", "purpose", "channel", "status", "changed_at", "origin", "actor", "applied")
    list_filter = ("purpose", "channel", "status", "origin")
    search_fields = ("customer__id",)
    show_full_result_count = False


@admin.register(Erasure)
class ErasureAdmin(ReadOnly):
    list_display = ("id", "customer_id", "suppress", "actor", "erased_at")
    list_filter = ("suppress",)
    search_fields = ("customer_id", "actor")


@admin.register(PrivacyAudit)
class PrivacyAuditAdmin(ReadOnly):
    list_display = ("at", "action", "actor", "customer_id")
    list_filter = ("action",)
    search_fields = ("customer_id", "actor")
