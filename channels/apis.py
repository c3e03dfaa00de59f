"""Inbound provider webhooks and the staff messaging API. No logic here: see services/inbound."""

from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels.inbound import twilio_status_receive, webhook_receive
from channels.models import Delivery, DeliveryChannel
from channels.selectors import delivery_get
from channels.services import deliver
from config.core.errors import NotFound, PayloadTooLarge

TAGS = ["channels"]


class WebhookApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        operation_id="webhooks_receive",
        summary="Receive a provider webhook for a source",
        description="twilio: form-encoded inbound SMS signed with X-Twilio-Signature (STOP/START update "
        "SMS consent). chat, pos: JSON signed with `Throughline-Signature: t=<unix>,v1=<hex>` "
        "(HMAC-SHA256 over `<t>.<body>`, 300 s tolerance). mapped: any system's JSON (an object or a batch), "
        "signed the same way, turned into events by the source's field mapping (400 `no_mapping` without one). "
        "sendgrid: Event Webhook batches (ECDSA). 401 unsigned/wrong/stale, 409 replayed.",
        request={"application/json": dict, "application/x-www-form-urlencoded": dict},
        responses={
            200: inline_serializer(
                "WebhookReceived",
                {
                    "accepted": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                    "rejected": serializers.IntegerField(),
                    "consent": serializers.ListField(child=serializers.CharField()),
                },
            ),
            401: OpenApiResponse(description="Missing, wrong or stale signature"),
            409: OpenApiResponse(description="Replayed request"),
        },
        tags=TAGS,
        auth=[],
    )
    def post(self, request: Request, provider: str, source_id: UUID) -> Response:
        limit = settings.CHANNELS_WEBHOOK_MAX_BODY_BYTES
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            raise PayloadTooLarge("webhook body is too large", code="body_too_large")
        result = webhook_receive(
            provider=provider,
            source_id=source_id,
            body=request._request.body,
            meta=request.META,
            url=_signed_url(request),
            received_at=timezone.now(),
        )
        return Response(
            {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": result.rejected,
                "consent": result.consent,
            }
        )


def _signed_url(request: Request) -> str:
    """The URL the provider signed: the public base URL when a proxy changes what Django sees."""
    base = settings.CHANNELS_PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{request.get_full_path()}" if base else request.build_absolute_uri()


class TwilioStatusApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        operation_id="webhooks_twilio_status",
        summary="Receive a Twilio status callback for an outbound SMS",
        description="Form-encoded, signed with X-Twilio-Signature by the source's Twilio auth token (the "
        "`twilio` webhook secret). MessageStatus delivered moves the delivery (found by MessageSid) to "
        "delivered and records Message Delivered; undelivered/failed move it to failed and record "
        "Message Failed (error codes 30005, 30006, 21211, 21614 also mark the number undeliverable). "
        "In-flight statuses and unknown MessageSids are acknowledged without a change. Idempotent.",
        request={"application/x-www-form-urlencoded": dict},
        responses={
            200: inline_serializer(
                "TwilioStatusReceived",
                {
                    "matched": serializers.BooleanField(),
                    "delivery_id": serializers.UUIDField(allow_null=True),
                    "status": serializers.CharField(),
                },
            ),
            400: OpenApiResponse(description="No MessageSid or an unknown MessageStatus"),
            401: OpenApiResponse(description="Missing or wrong signature, or unknown source"),
            413: OpenApiResponse(description="Body too large"),
        },
        tags=TAGS,
        auth=[],
    )
    def post(self, request: Request, source_id: UUID) -> Response:
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.CHANNELS_WEBHOOK_MAX_BODY_BYTES:
            raise PayloadTooLarge("webhook body is too large", code="body_too_large")
        result = twilio_status_receive(
            source_id=source_id, body=request._request.body, meta=request.META, url=_signed_url(request)
        )
        return Response({"matched": result.matched, "delivery_id": result.delivery_id, "status": result.status})


class DeliveryOutput(serializers.ModelSerializer[Delivery]):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "idempotency_key",
            "channel",
            "purpose",
            "customer_id",
            "content",
            "status",
            "provider",
            "attempts",
            "last_error",
            "provider_message_id",
            "queued_at",
            "sent_at",
            "finished_at",
        ]


class MessageInput(serializers.Serializer[Any]):
    channel = serializers.ChoiceField(choices=DeliveryChannel.choices)
    customer_id = serializers.UUIDField()
    content = serializers.DictField(help_text="email: subject, body, html; sms: body; webhook: any JSON.")
    idempotency_key = serializers.CharField(max_length=200)
    purpose = serializers.CharField(max_length=64, default="transactional")
    fallback = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)


class MessageSendApi(APIView):
    @extend_schema(
        operation_id="messages_send",
        summary="Send a one-off message to a customer",
        description="Idempotent on idempotency_key: the same key returns the same delivery and sends once. "
        "Consent and the address are checked at send time.",
        request=MessageInput,
        responses={202: DeliveryOutput},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        delivery = deliver(**data.validated_data)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryDetailApi(APIView):
    @extend_schema(
        operation_id="deliveries_retrieve",
        summary="A delivery: status, attempts and, when dead, why",
        responses={200: DeliveryOutput},
        tags=TAGS,
    )
    def get(self, request: Request, delivery_id: UUID) -> Response:
        delivery = delivery_get(delivery_id=delivery_id)
        if delivery is None:
            raise NotFound("no such delivery")
        return Response(DeliveryOutput(delivery).data)
