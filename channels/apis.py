"""Inbound provider webhooks and the staff messaging API. No logic here: see channels.inbound and channels.services."""

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

from channels.contact import verdict_json
from channels.contracts import channels_available, contact_check
from channels.feeds import polling_feed_set, source_mapping_set
from channels.inbound import twilio_status_receive, webhook_receive
from channels.models import ContactPolicy, Delivery, DeliveryChannel, PollingFeed, SourceMapping
from channels.selectors import delivery_get
from channels.services.contact_policy import contact_policy_set
from channels.services.deliveries import deliver
from config.core.body import read_body
from config.core.errors import BadRequest, NotFound, PayloadTooLarge

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
        result = webhook_receive(
            provider=provider,
            source_id=source_id,
            body=read_body(request.META, limit=settings.CHANNELS_WEBHOOK_MAX_BODY_BYTES),
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
        body = read_body(request.META, limit=settings.CHANNELS_WEBHOOK_MAX_BODY_BYTES)
        result = twilio_status_receive(source_id=source_id, body=body, meta=request.META, url=_signed_url(request))
        return Response({"matched": result.matched, "delivery_id": result.delivery_id, "status": result.status})


class DeliveryOutput(serializers.ModelSerializer[Delivery]):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "idempotency_key",
            "channel",
            "purpose",
            "priority",
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
    content = serializers.DictField(
        help_text="email: subject, body, html; sms: body; push: title, body, data, image; webhook: any JSON."
    )
    idempotency_key = serializers.CharField(max_length=200)
    purpose = serializers.CharField(max_length=64, default="transactional")
    priority = serializers.ChoiceField(choices=["normal", "high"], default="normal")
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


# --- the contact policy ----------------------------------------------------------------------

MAX_CONFIG_BODY_BYTES = 64 * 1024


def _limit_body(request: Request) -> None:
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_CONFIG_BODY_BYTES:
        raise PayloadTooLarge("body is too large", code="body_too_large")


class ContactPolicyBody(serializers.Serializer[Any]):
    caps = serializers.ListField(
        child=serializers.DictField(),
        max_length=50,
        default=list,
        help_text='[{"purpose": "marketing", "channel": "*", "max": 3, "window": {"days": 7}}]; '
        'purpose/channel may be "*"; window in days, hours or minutes.',
    )
    quiet_start = serializers.TimeField(allow_null=True, default=None, help_text="Local time, e.g. 21:00.")
    quiet_end = serializers.TimeField(allow_null=True, default=None, help_text="Local time, e.g. 08:00.")
    fallback_timezone = serializers.CharField(max_length=64, default="UTC")
    high_priority_bypasses_caps = serializers.BooleanField(default=True)


def _policy_data(row: ContactPolicy | None) -> dict[str, Any]:
    if row is None:
        return dict(ContactPolicyBody({}).data) | {"caps": []}
    return dict(ContactPolicyBody(row).data)


class ContactPolicyApi(APIView):
    @extend_schema(
        operation_id="contact_policy_retrieve",
        summary="The workspace's contact policy",
        responses={200: ContactPolicyBody},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(_policy_data(ContactPolicy.objects.filter(id=ContactPolicy.SINGLETON_ID).first()))

    @extend_schema(
        operation_id="contact_policy_update",
        summary="Replace the contact policy",
        description="Frequency caps across every journey and channel, quiet hours in the customer's `timezone` "
        "trait (else fallback_timezone), and whether a high priority may exceed caps. Transactional messages "
        "are exempt. Enforced by contact_check and again when each delivery is sent.",
        request=ContactPolicyBody,
        responses={
            200: ContactPolicyBody,
            400: OpenApiResponse(description="Invalid rule (the detail names it, e.g. /caps/0/window)"),
            413: OpenApiResponse(description="Body too large"),
        },
        tags=TAGS,
    )
    def put(self, request: Request) -> Response:
        _limit_body(request)
        data = ContactPolicyBody(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(_policy_data(contact_policy_set(**data.validated_data)))


class ContactCheckQuery(serializers.Serializer[Any]):
    channel = serializers.ChoiceField(choices=DeliveryChannel.choices)
    purpose = serializers.CharField(max_length=64)
    priority = serializers.ChoiceField(choices=["normal", "high"], default="normal")


class ContactCheckApi(APIView):
    @extend_schema(
        operation_id="customers_contact_check",
        summary="May this customer be contacted now on a channel, for a purpose? If not, when?",
        parameters=[ContactCheckQuery],
        responses={
            200: inline_serializer(
                "ContactVerdict",
                {
                    "allowed": serializers.BooleanField(),
                    "reason": serializers.ChoiceField(
                        choices=["ok", "exempt", "priority_bypass", "quiet_hours", "frequency_cap"]
                    ),
                    "retry_at": serializers.DateTimeField(allow_null=True),
                    "detail": serializers.CharField(),
                    "channels": serializers.DictField(
                        child=serializers.CharField(allow_null=True),
                        help_text="channels_available: null when usable, else why not.",
                    ),
                },
            ),
            400: OpenApiResponse(description="Unknown channel, purpose or priority"),
        },
        tags=TAGS,
    )
    def get(self, request: Request, customer_id: UUID) -> Response:
        query = ContactCheckQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        verdict = contact_check(customer_id=customer_id, **query.validated_data)
        available = channels_available(
            customer_id=customer_id, channels=[query.validated_data["channel"]], purpose=query.validated_data["purpose"]
        )
        return Response({**verdict_json(verdict), "channels": available})


# --- mapping and polling adapters --------------------------------------------------------------


class MappingBody(serializers.Serializer[Any]):
    spec = serializers.DictField(help_text="The field mapping; see docs/channels.md, 'Mapping adapter'.")


class SourceMappingApi(APIView):
    @extend_schema(
        operation_id="sources_event_mapping_retrieve",
        summary="A source's field mapping",
        responses={200: MappingBody, 404: OpenApiResponse(description="No mapping")},
        tags=TAGS,
    )
    def get(self, request: Request, source_id: UUID) -> Response:
        spec = SourceMapping.objects.filter(source_id=source_id).values_list("spec", flat=True).first()
        if spec is None:
            raise NotFound("this source has no field mapping")
        return Response({"spec": spec})

    @extend_schema(
        operation_id="sources_event_mapping_update",
        summary="Set a source's field mapping (its `mapped` webhook and polling feed use it)",
        request=MappingBody,
        responses={
            200: MappingBody,
            400: OpenApiResponse(description="Invalid mapping (the detail names the part) or unknown source"),
            413: OpenApiResponse(description="Body too large"),
        },
        tags=TAGS,
    )
    def put(self, request: Request, source_id: UUID) -> Response:
        _limit_body(request)
        data = MappingBody(data=request.data)
        data.is_valid(raise_exception=True)
        row = source_mapping_set(source_id=source_id, spec=data.validated_data["spec"])
        return Response({"spec": row.spec})


class PollingFeedBody(serializers.Serializer[Any]):
    url = serializers.URLField(max_length=1000)
    interval_seconds = serializers.IntegerField(min_value=5, max_value=86400, default=60)
    cursor_param = serializers.CharField(max_length=64, default="since")
    next_cursor_path = serializers.CharField(max_length=200, default="next_cursor")
    auth_header_name = serializers.CharField(max_length=64, default="Authorization")
    auth_header_value = serializers.CharField(
        max_length=2000, required=False, write_only=True, allow_blank=True, help_text="Stored encrypted, never shown."
    )
    enabled = serializers.BooleanField(default=True)
    cursor = serializers.CharField(read_only=True)
    last_polled_at = serializers.DateTimeField(read_only=True)
    last_error = serializers.CharField(read_only=True)


class PollingFeedApi(APIView):
    @extend_schema(
        operation_id="sources_polling_feed_retrieve",
        summary="A source's polling feed and where it stands",
        responses={200: PollingFeedBody, 404: OpenApiResponse(description="No feed")},
        tags=TAGS,
    )
    def get(self, request: Request, source_id: UUID) -> Response:
        feed = PollingFeed.objects.filter(source_id=source_id).first()
        if feed is None:
            raise NotFound("this source has no polling feed")
        return Response(PollingFeedBody(feed).data)

    @extend_schema(
        operation_id="sources_polling_feed_update",
        summary="Create or change a source's polling feed (first poll at once)",
        request=PollingFeedBody,
        responses={
            200: PollingFeedBody,
            400: OpenApiResponse(description="Invalid feed, or the source has no field mapping"),
            413: OpenApiResponse(description="Body too large"),
        },
        tags=TAGS,
    )
    def put(self, request: Request, source_id: UUID) -> Response:
        _limit_body(request)
        data = PollingFeedBody(data=request.data)
        data.is_valid(raise_exception=True)
        if not SourceMapping.objects.filter(source_id=source_id).exists():
            raise BadRequest("set the source's field mapping first", code="no_mapping")
        feed = polling_feed_set(source_id=source_id, **data.validated_data)
        return Response(PollingFeedBody(feed).data)
