"""The management API for consent, export and erase. No logic here: services write, selectors
read, serializers shape. Every call is made by an API token, named in the audit trail."""

from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core.errors import NotFound
from profiles.privacy import conventions, selectors, services
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.models import ConsentOrigin, ConsentStatus, Erasure
from profiles.selectors import customer_get

TAGS = ["privacy"]
MAX_CHOICES = 100


def _actor(request: Request) -> str:
    return str(request.user)


class ConsentStateOutput(serializers.Serializer):
    purpose = serializers.CharField()
    channel = serializers.CharField(help_text='A channel, or "*" for every channel of the purpose.')
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    changed_at = serializers.DateTimeField()
    origin = serializers.ChoiceField(choices=ConsentOrigin.choices)


class ConsentChangeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    purpose = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    changed_at = serializers.DateTimeField()
    recorded_at = serializers.DateTimeField()
    origin = serializers.ChoiceField(choices=ConsentOrigin.choices)
    source_id = serializers.UUIDField(allow_null=True)
    source_label = serializers.CharField()
    actor = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)
    applied = serializers.BooleanField(help_text="False when a later choice was already known.")


class ConsentOutput(serializers.Serializer):
    customer_id = serializers.UUIDField()
    current = ConsentStateOutput(many=True)
    history = ConsentChangeOutput(many=True, help_text="Newest first.")


class ConsentChoiceInput(serializers.Serializer):
    purpose = serializers.CharField(max_length=64, help_text="e.g. marketing, analytics, transactional.")
    channel = serializers.CharField(max_length=32, help_text='e.g. email, sms, push, web; "*" for every channel.')
    status = serializers.ChoiceField(choices=ConsentStatus.choices)

    def validate_purpose(self, value: str) -> str:
        name = conventions.normalize_purpose(value)
        if name is None:
            raise serializers.ValidationError("a letter, then letters, digits or underscores")
        return name

    def validate_channel(self, value: str) -> str:
        name = conventions.normalize_channel(value)
        if name is None:
            raise serializers.ValidationError('a letter, then letters, digits or underscores; or "*"')
        return name


class ConsentSetInput(serializers.Serializer):
    consents = ConsentChoiceInput(many=True, allow_empty=False)
    changed_at = serializers.DateTimeField(
        required=False, help_text="When the person made the choice; now when omitted. Not in the future."
    )
    # DRF pops declared fields off the class, so this does not shadow Field.source at runtime.
    source = serializers.CharField(  # type: ignore[assignment]
        required=False, default="", allow_blank=True, max_length=200, help_text="Where it was captured."
    )

    def validate_consents(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        if len(value) > MAX_CHOICES:
            raise serializers.ValidationError(f"at most {MAX_CHOICES} choices per request")
        return value


def _consent_body(customer_id: UUID) -> dict[str, Any]:
    customer = customer_get(customer_id=customer_id)
    if customer is None:
        raise NotFound("no such customer")
    return ConsentOutput(
        {
            "customer_id": customer.id,
            "current": selectors.consent_current(customer=customer),
            "history": selectors.consent_history(customer=customer),
        }
    ).data


class CustomerConsentApi(APIView):
    @extend_schema(
        operation_id="customers_consent_retrieve",
        summary="A customer's consent: current state and full history",
        responses={200: ConsentOutput},
        tags=TAGS,
    )
    def get(self, request: Request, customer_id: UUID) -> Response:
        return Response(_consent_body(customer_id))

    @extend_schema(
        operation_id="customers_consent_update",
        summary="Record consent choices",
        description="Each choice is appended to the history and becomes current unless a later one "
        "(by changed_at) is already known. Audited under the API token.",
        request=ConsentSetInput,
        responses={200: ConsentOutput},
        examples=[
            OpenApiExample(
                "Opt out of marketing SMS",
                value={"consents": [{"purpose": "marketing", "channel": "sms", "status": "denied"}], "source": "crm"},
                request_only=True,
            )
        ],
        tags=TAGS,
    )
    def post(self, request: Request, customer_id: UUID) -> Response:
        given = ConsentSetInput(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        services.consent_set(
            customer_id=customer_id,
            choices=[ConsentChoice(c["purpose"], c["channel"], c["status"]) for c in data["consents"]],
            origin=ConsentOrigin.API,
            actor=_actor(request),
            changed_at=data.get("changed_at"),
            source_label=data["source"],
        )
        return Response(_consent_body(customer_id))


class CustomerExportApi(APIView):
    @extend_schema(
        operation_id="customers_export",
        summary="Everything held about a person, as one JSON document",
        description="Streamed: profile, merged profiles, identities, consent (current and history), "
        "merges, sessions, deliveries, privacy requests, then every event oldest first. "
        "The shape is described in docs/privacy.md. Audited under the API token.",
        responses={
            200: OpenApiResponse(
                response=inline_serializer(
                    "CustomerExport",
                    {
                        "format": serializers.CharField(),
                        "generated_at": serializers.DateTimeField(),
                        "customer": serializers.DictField(),
                        "merged_profiles": serializers.ListField(child=serializers.DictField()),
                        "identities": serializers.ListField(child=serializers.DictField()),
                        "consent": serializers.DictField(),
                        "merges": serializers.ListField(child=serializers.DictField()),
                        "sessions": serializers.ListField(child=serializers.DictField()),
                        "deliveries": serializers.ListField(child=serializers.DictField()),
                        "privacy_requests": serializers.ListField(child=serializers.DictField()),
                        "events": serializers.ListField(child=serializers.DictField()),
                    },
                ),
                description="The export document.",
            )
        },
        tags=TAGS,
    )
    def get(self, request: Request, customer_id: UUID) -> StreamingHttpResponse:
        chunks = services.customer_export(customer_id=customer_id, actor=_actor(request))
        response = StreamingHttpResponse(chunks, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="customer-{customer_id}.json"'
        return response


class EraseInput(serializers.Serializer):
    suppress = serializers.BooleanField(
        required=False, default=False, help_text="Drop later events that carry any of the person's identifiers."
    )
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=2000)


class ErasureOutput(serializers.Serializer):
    erasure_id = serializers.IntegerField(source="id")
    customer_id = serializers.UUIDField(help_text="The id the first request named.")
    erased_customer_ids = serializers.ListField(child=serializers.UUIDField(), source="customer_ids")
    suppress = serializers.BooleanField()
    reason = serializers.CharField()
    erased_at = serializers.DateTimeField()
    deleted = serializers.DictField(child=serializers.IntegerField(), help_text="Rows deleted, per kind.")


class CustomerEraseApi(APIView):
    @extend_schema(
        operation_id="customers_erase",
        summary="Erase everything held about a person",
        description="Deletes the profile and the profiles merged into it, their identities, events, "
        "sessions (Redis included), consent, merges and quarantined messages sent with their "
        "identifiers, keeping only keyed hashes of the identifiers. Idempotent: erasing again, "
        "by any of the erased ids, answers with the first erasure. Audited under the API token.",
        request=EraseInput,
        responses={200: ErasureOutput},
        tags=TAGS,
    )
    def post(self, request: Request, customer_id: UUID) -> Response:
        given = EraseInput(data=request.data)
        given.is_valid(raise_exception=True)
        erasure: Erasure = services.customer_erase(
            customer_id=customer_id,
            suppress=given.validated_data["suppress"],
            reason=given.validated_data["reason"],
            actor=_actor(request),
        )
        return Response(ErasureOutput(erasure).data)
