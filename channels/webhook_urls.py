from django.urls import path

from channels.apis import TwilioStatusApi, WebhookApi

urlpatterns = [
    path("webhooks/twilio/<uuid:source_id>/status", TwilioStatusApi.as_view(), name="webhooks-twilio-status"),
    path("webhooks/<str:provider>/<uuid:source_id>", WebhookApi.as_view(), name="webhooks-receive"),
]
