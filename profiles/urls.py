from django.urls import include, path

from profiles import apis, merge_apis
from profiles.customer360 import apis as customer360_apis
from profiles.privacy import apis as privacy_apis

urlpatterns = [
    path("customers", apis.CustomerLookupApi.as_view(), name="customer-lookup"),
    path("customers/<uuid:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("customers/<uuid:customer_id>/events", apis.CustomerEventsApi.as_view(), name="customer-events"),
    path("customers/merge", merge_apis.CustomerMergeApi.as_view(), name="customer-merge"),
    path("customers/<uuid:customer_id>/merges", merge_apis.CustomerMergesApi.as_view(), name="customer-merges"),
    path("computed-traits", apis.ComputedTraitsApi.as_view(), name="computed-traits"),
    path("merges/<int:merge_id>/undo", merge_apis.MergeUndoApi.as_view(), name="merge-undo"),
    path("customers/<uuid:customer_id>/consent", privacy_apis.CustomerConsentApi.as_view(), name="customer-consent"),
    path("customers/<uuid:customer_id>/export", privacy_apis.CustomerExportApi.as_view(), name="customer-export"),
    path("customers/<uuid:customer_id>/erase", privacy_apis.CustomerEraseApi.as_view(), name="customer-erase"),
    path(
        "customers/<uuid:customer_id>/timeline",
        customer360_apis.CustomerTimelineApi.as_view(),
        name="customer-timeline",
    ),
    path("", include("profiles.schemas.urls")),  # the schema registry and the quarantine
]
