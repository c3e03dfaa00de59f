from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from profiles.computed_traits import definitions_changed
from profiles.customer360.admin import Customer360AdminMixin
from profiles.merging import customer_merge, customer_unmerge
from profiles.models import (
    ComputedTrait,
    Customer,
    Event,
    Identity,
    MergeRecord,
    MergeRefusal,
    QuarantinedMessage,
    Source,
)
from profiles.privacy.admin import EraseCustomersMixin  # also registers the privacy admin
from profiles.schemas.admin import QuarantineStatusFilter, replay_quarantined  # also registers the registry's admin
from profiles.services import source_rotate_key


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "channel", "enabled", "schema_policy", "write_key_prefix", "created_at")
    list_filter = ("channel", "enabled", "schema_policy")
    readonly_fields = ("write_key_prefix", "created_at", "updated_at")
    fields = (
        "name",
        "channel",
        "enabled",
        "identity_kinds",
        "allowed_origins",
        "schema_policy",
        "write_key_prefix",
        "created_at",
        "updated_at",
    )
    actions = ("rotate_write_key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The write key is shown once, when created: `manage.py create_source` does that.
        return False

    @admin.action(description="Rotate the write key (shows the new key once)")
    def rotate_write_key(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset:
            key = source_rotate_key(source=source)
            self.message_user(request, f"{source.name}: new write key {key}", messages.WARNING)


class IdentityInline(admin.TabularInline):
    model = Identity
    fields = ("kind", "value", "source", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Customer)
class CustomerAdmin(Customer360AdminMixin, EraseCustomersMixin, admin.ModelAdmin):
    list_display = ("id", "created_at", "updated_at", "merged_into")
    search_fields = ("id", "identities__value")
    readonly_fields = ("id", "created_at", "updated_at", "merged_into")
    fields = ("id", "traits", "merged_into", "created_at", "updated_at")
    inlines = (IdentityInline,)
    actions = ("merge_selected",)

    @admin.action(description="Merge the selected customers (the oldest survives)")
    def merge_selected(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        outcome = customer_merge(customer_ids=ids, reason="merged in the admin", actor=f"admin:{request.user}")
        if outcome.refused:
            self.message_user(request, f"Merge refused: {outcome.refused}", messages.ERROR)
        else:
            self.message_user(request, f"Merged {len(outcome.merged_ids)} profiles into {outcome.survivor_id}.")


@admin.register(Identity)
class IdentityAdmin(ReadOnlyAdmin):
    list_display = ("kind", "value", "customer", "source", "created_at")
    list_filter = ("kind",)
    search_fields = ("value",)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "name", "channel", "customer", "timestamp", "received_at")
    list_filter = ("type", "channel")
    search_fields = ("message_id", "name", "user_id", "anonymous_id")
    show_full_result_count = False


@admin.register(QuarantinedMessage)
class QuarantinedMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "source", "stage", "reason", "message_id", "received_at", "replay_count", "resolved_at")
    list_filter = (QuarantineStatusFilter, "stage", "reason", "source")
    search_fields = ("message_id", "detail")
    actions = (replay_quarantined,)


@admin.register(MergeRecord)
class MergeRecordAdmin(ReadOnlyAdmin):
    list_display = ("id", "merged", "survivor", "reason", "actor", "created_at", "undone_at", "undone_by")
    search_fields = ("survivor__id", "merged__id", "actor")
    actions = ("undo",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only fields, but the undo action needs change permission.
        return bool(request.user.is_staff)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in MergeRecord._meta.fields]

    @admin.action(description="Undo the selected merges")
    def undo(self, request: HttpRequest, queryset: QuerySet[MergeRecord]) -> None:
        for record in queryset:
            customer_unmerge(record_id=record.id, actor=f"admin:{request.user}")
        self.message_user(request, f"Undid {queryset.count()} merges.")


@admin.register(MergeRefusal)
class MergeRefusalAdmin(ReadOnlyAdmin):
    list_display = ("id", "reason", "actor", "created_at")


@admin.register(ComputedTrait)
class ComputedTraitAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "event_name", "property", "window_days", "enabled")

    def save_model(self, request: HttpRequest, obj: ComputedTrait, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        definitions_changed()
