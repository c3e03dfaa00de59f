"""The management API over profiles. No logic here: selectors read, serializers shape."""

from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework import serializers as drf_serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core.errors import BadRequest, NotFound
from profiles import selectors
from profiles.computed_traits import computed_trait_create, computed_traits_of
from profiles.models import ComputedTrait, Customer, Event

LOOKUP_KINDS = ("user_id", "anonymous_id", "email", "phone")


class IdentityOutput(serializers.Serializer):
    kind = serializers.CharField()
    value = serializers.CharField()


class CustomerOutput(serializers.Serializer):
    id = serializers.UUIDField()
    traits = serializers.DictField()
    identities = serializers.SerializerMethodField()
    merged_ids = serializers.SerializerMethodField()
    computed_traits = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(IdentityOutput(many=True))
    def get_identities(self, customer: Customer) -> list[dict[str, str]]:
        return [{"kind": i.kind, "value": i.value} for i in customer.identities.order_by("kind", "value")]

    @extend_schema_field(serializers.DictField())
    def get_computed_traits(self, customer: Customer) -> dict[str, object]:
        return computed_traits_of(customer)

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_merged_ids(self, customer: Customer) -> list[UUID]:
        cluster = selectors.customer_cluster(customer_id=customer.id)
        return list(cluster.member_ids[1:]) if cluster is not None else []


class EventOutput(serializers.ModelSerializer):
    source_id = serializers.UUIDField()

    class Meta:
        model = Event
        fields = (
            "id",
            "message_id",
            "type",
            "name",
            "channel",
            "source_id",
            "user_id",
            "anonymous_id",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
            "properties",
            "context",
            "extra",
        )


class CustomerLookupApi(APIView):
    @extend_schema(
        operation_id="customers_lookup",
        summary="Find the customer holding an identity",
        description="Exactly one of the parameters. Values are normalised as at ingestion (emails "
        "lower-cased, phones to E.164).",
        parameters=[OpenApiParameter(kind, OpenApiTypes.STR, required=False) for kind in LOOKUP_KINDS],
        responses={200: CustomerOutput},
        tags=["customers"],
    )
    def get(self, request: Request) -> Response:
        given = [(kind, request.query_params[kind]) for kind in LOOKUP_KINDS if request.query_params.get(kind)]
        if len(given) != 1:
            raise BadRequest(f"give exactly one of {', '.join(LOOKUP_KINDS)}", code="invalid_lookup")
        kind, value = given[0]
        customer = selectors.customer_find(kind=kind, value=value)
        if customer is None:
            raise NotFound(f"no customer with {kind} {value!r}")
        return Response(CustomerOutput(customer).data)


class CustomerDetailApi(APIView):
    @extend_schema(operation_id="customers_retrieve", responses={200: CustomerOutput}, tags=["customers"])
    def get(self, request: Request, customer_id: UUID) -> Response:
        customer = selectors.customer_get(customer_id=customer_id)
        if customer is None:
            raise NotFound("no such customer")
        return Response(CustomerOutput(customer).data)


class EventCursorPagination(CursorPagination):
    ordering = ("-timestamp", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class CustomerEventsApi(APIView):
    pagination_class = EventCursorPagination

    @extend_schema(
        operation_id="customers_events_list",
        summary="A customer's events, newest first",
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, required=False),
            OpenApiParameter("page_size", OpenApiTypes.INT, required=False),
        ],
        responses={200: EventOutput(many=True)},
        tags=["customers"],
    )
    def get(self, request: Request, customer_id: UUID) -> Response:
        customer = selectors.customer_get(customer_id=customer_id)
        if customer is None:
            raise NotFound("no such customer")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.customer_events(customer=customer), request, view=self)
        return paginator.get_paginated_response(EventOutput(page, many=True).data)


class ComputedTraitSerializer(serializers.ModelSerializer):
    class Meta:
        model = ComputedTrait
        fields = ("name", "kind", "event_name", "property", "where", "window_days", "enabled", "created_at")
        read_only_fields = ("enabled", "created_at")


class ComputedTraitsApi(APIView):
    @extend_schema(
        operation_id="computed_traits_list", responses={200: ComputedTraitSerializer(many=True)}, tags=["traits"]
    )
    def get(self, request: Request) -> Response:
        return Response(ComputedTraitSerializer(ComputedTrait.objects.order_by("name"), many=True).data)

    @extend_schema(
        operation_id="computed_traits_create",
        summary="Define a computed trait",
        description="count, sum, last_value, first_seen or last_seen over a track event, with an optional "
        "property filter and window in days. Counts events routed from now on.",
        request=ComputedTraitSerializer,
        responses={201: ComputedTraitSerializer},
        tags=["traits"],
    )
    def post(self, request: Request) -> Response:
        data = ComputedTraitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = computed_trait_create(**data.validated_data)
        except DjangoValidationError as error:
            raise drf_serializers.ValidationError(error.message_dict) from None
        return Response(ComputedTraitSerializer(row).data, status=201)
