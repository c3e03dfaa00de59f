from django.urls import path

from channels.apis import (
    ContactCheckApi,
    ContactPolicyApi,
    DeliveryDetailApi,
    MessageSendApi,
    PollingFeedApi,
    SourceMappingApi,
)

urlpatterns = [
    path("messages", MessageSendApi.as_view(), name="messages-send"),
    path("deliveries/<uuid:delivery_id>", DeliveryDetailApi.as_view(), name="deliveries-detail"),
    path("contact-policy", ContactPolicyApi.as_view(), name="contact-policy"),
    path("customers/<uuid:customer_id>/contact-check", ContactCheckApi.as_view(), name="customer-contact-check"),
    path("sources/<uuid:source_id>/event-mapping", SourceMappingApi.as_view(), name="source-event-mapping"),
    path("sources/<uuid:source_id>/polling-feed", PollingFeedApi.as_view(), name="source-polling-feed"),
]
