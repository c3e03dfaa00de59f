from django.urls import path

from channels.apis import WebhookApi

urlpatterns = [
    path("webhooks/<str:provider>/<uuid:source_id>", WebhookApi.as_view(), name="webhooks-receive"),
]
