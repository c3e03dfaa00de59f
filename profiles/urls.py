from django.urls import path

from profiles import apis

urlpatterns = [
    path("customers", apis.CustomerLookupApi.as_view(), name="customer-lookup"),
    path("customers/<uuid:customer_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("customers/<uuid:customer_id>/events", apis.CustomerEventsApi.as_view(), name="customer-events"),
]
