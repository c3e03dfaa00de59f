from django.urls import path

from channels.apis import DeliveryDetailApi, MessageSendApi

urlpatterns = [
    path("messages", MessageSendApi.as_view(), name="messages-send"),
    path("deliveries/<uuid:delivery_id>", DeliveryDetailApi.as_view(), name="deliveries-detail"),
]
