"""The customer 360 page in the admin: read-only, one customer across every channel."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from config.core.errors import ApplicationError
from profiles.computed_traits import computed_traits_of
from profiles.customer360 import timeline
from profiles.models import Customer
from profiles.privacy import selectors as privacy
from profiles.selectors import customer_get, customer_member_ids

PAGE_SIZE = 50


class Customer360AdminMixin(admin.ModelAdmin):
    """Adds /admin/profiles/customer/<id>/overview/ and a link to it from the list."""

    def get_urls(self) -> list[URLPattern]:
        view: Callable[..., HttpResponse] = self.admin_site.admin_view(self.overview_view)
        return [
            path("<uuid:object_id>/overview/", view, name="profiles_customer_overview"),
            *super().get_urls(),
        ]

    def get_list_display(self, request: HttpRequest) -> Any:
        return (*super().get_list_display(request), "overview_link")

    @admin.display(description="360")
    def overview_link(self, customer: Customer) -> str:
        return format_html('<a href="{}">overview</a>', reverse("admin:profiles_customer_overview", args=[customer.id]))

    def overview_view(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        customer = customer_get(customer_id=object_id)
        if customer is None:
            raise Http404("no such customer")
        try:
            before = timeline.cursor_decode(request.GET["cursor"]) if request.GET.get("cursor") else None
        except ApplicationError:
            before = None
        page = timeline.customer_timeline(customer_id=customer.id, before=before, limit=PAGE_SIZE)
        assert page is not None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Customer {customer.id}",
            "opts": self.model._meta,
            "customer": customer,
            "requested_id": object_id,
            "merged_ids": customer_member_ids(customer_id=customer.id)[1:],
            "identities": customer.identities.order_by("kind", "value"),
            "traits": sorted(customer.traits.items()),
            "computed_traits": computed_traits_of(customer),
            "consent": privacy.consent_current(customer=customer),
            "entries": page.entries,
            "next_cursor": timeline.cursor_encode(page.next) if page.next else None,
        }
        return TemplateResponse(request, "admin/profiles/customer/overview.html", context)
