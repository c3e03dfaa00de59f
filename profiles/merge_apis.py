"""Explicit merge and unmerge for support staff, and the merge history of a customer."""

from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core.errors import NotFound
from profiles import selectors
from profiles.merging import MergeRefused, customer_merge, customer_unmerge
from profiles.models import MergeRecord, MergeRefusal


def actor_of(request: Request) -> str:
    return str(request.user)


class MergeInput(serializers.Serializer):
    customer_ids = serializers.ListField(child=serializers.UUIDField(), min_length=2, max_length=50)
    reason = serializers.CharField(max_length=200)


class MergeOutput(serializers.Serializer):
    survivor_id = serializers.UUIDField()
    merged_ids = serializers.ListField(child=serializers.UUIDField())


class MergeRecordOutput(serializers.ModelSerializer):
    class Meta:
        model = MergeRecord
        fields = (
            "id",
            "survivor_id",
            "merged_id",
            "reason",
            "actor",
            "trigger",
            "identities",
            "created_at",
            "undone_at",
            "undone_by",
        )


class MergeRefusalOutput(serializers.ModelSerializer):
    class Meta:
        model = MergeRefusal
        fields = ("id", "customer_ids", "reason", "actor", "trigger", "created_at")


class MergeHistoryOutput(serializers.Serializer):
    merges = MergeRecordOutput(many=True)
    refusals = MergeRefusalOutput(many=True)


class CustomerMergeApi(APIView):
    @extend_schema(
        operation_id="customers_merge",
        summary="Merge profiles that are one person",
        description="The oldest profile survives; the others' identities and events move to it, and their "
        "sessions are found through it. "
        "409 `merge_refused` when identity rules forbid it (e.g. two user ids), with the reason.",
        request=MergeInput,
        responses={200: MergeOutput},
        tags=["merges"],
    )
    def post(self, request: Request) -> Response:
        data = MergeInput(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["customer_ids"]
        missing = set(ids) - set(selectors.customers_existing(customer_ids=ids))
        if missing:
            raise NotFound(f"no such customer: {', '.join(sorted(map(str, missing)))}")
        outcome = customer_merge(customer_ids=ids, reason=data.validated_data["reason"], actor=actor_of(request))
        if outcome.refused:
            raise MergeRefused(outcome.refused)
        return Response(MergeOutput({"survivor_id": outcome.survivor_id, "merged_ids": outcome.merged_ids}).data)


class MergeUndoApi(APIView):
    @extend_schema(
        operation_id="merges_undo",
        summary="Undo a merge",
        description="The merged profile gets back its identities, its events, its traits and computed traits "
        "(its sessions never left it); the survivor gives back the traits it took from it (what was set on "
        "it since the merge stays) and stops counting its events in computed traits; the two "
        "are not merged again automatically. Undoing twice answers the same.",
        request=None,
        responses={200: MergeRecordOutput},
        tags=["merges"],
    )
    def post(self, request: Request, merge_id: int) -> Response:
        customer_unmerge(record_id=merge_id, actor=actor_of(request))
        return Response(MergeRecordOutput(MergeRecord.objects.get(id=merge_id)).data)


class CustomerMergesApi(APIView):
    @extend_schema(
        operation_id="customers_merges_list",
        summary="Merges into and out of a customer, and refused merges",
        responses={200: MergeHistoryOutput},
        tags=["merges"],
    )
    def get(self, request: Request, customer_id: UUID) -> Response:
        history = selectors.customer_merge_history(customer_id=customer_id)
        if history is None:
            raise NotFound("no such customer")
        return Response(MergeHistoryOutput(history).data)
