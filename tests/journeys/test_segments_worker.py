"""Segments with a real Celery worker: an identify posted to /v1 puts the customer in the segment
and its Segment Entered event is routed in turn, with nobody calling routing by hand."""

from typing import Any

import pytest

from journeys.models import SegmentMembership
from orchestration.models import RouteLog
from profiles.models import Event
from tests.conftest import wait_until
from tests.journeys.factories import SegmentFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_identify_enters_the_segment_and_the_entry_is_routed(ingest: Any, worker_factory: Any) -> None:
    SegmentFactory.create(key="vip", name="VIP", condition={"field": "traits.tier", "op": "equals", "value": "vip"})
    worker_factory()
    assert ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}}).status_code == 200
    wait_until(SegmentMembership.objects.exists, timeout=60, message="the membership is recorded")

    def entry_routed() -> bool:
        entered = Event.objects.filter(name="Segment Entered").values_list("id", flat=True)
        return RouteLog.objects.filter(event_id__in=list(entered)).exists()

    wait_until(entry_routed, timeout=60, message="Segment Entered is routed")
    assert list(Event.objects.filter(name__startswith="Segment ").values_list("name", "properties")) == [
        ("Segment Entered", {"segment": "vip", "segment_name": "VIP"})
    ]
