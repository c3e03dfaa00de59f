"""Routing a chunk is batch-shaped: the statements it runs do not grow with the chunk, and the
enrollments it starts are inserted together (a concurrent start rolls the chunk back)."""

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from journeys import demo
from journeys.models import Enrollment, EnrollmentStatus
from journeys.on_events import EnrollmentStartConflict, enrollments_insert
from orchestration.routing import route
from profiles.models import Event, EventOutbox
from tests.journeys.engine_support import fresh_contact_policy, providers, publish, route_pending
from tests.journeys.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db
__all__ = ["fresh_contact_policy", "providers"]


def _statements_routing(ingest: Any, people: int, prefix: str) -> int:
    """Statements run by routing one chunk of `people` new customers' events of the demo mix."""
    batch: list[dict[str, Any]] = []
    for i in range(people):
        user = f"{prefix}-{i}"
        batch += [
            {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}},
            {"type": "track", "userId": user, "event": "Cart Abandoned", "properties": {"item_count": 2}},
            {"type": "track", "userId": user, "event": "Form Started", "context": {"page": {"path": "/apply"}}},
            {"type": "track", "userId": user, "event": "Product Viewed"},
        ]
    stamped = [{"timestamp": timezone.now().isoformat(), **m} for m in batch]
    assert ingest.post("batch", {"batch": stamped}).status_code == 200
    ids = list(EventOutbox.objects.values_list("event_id", flat=True))
    with CaptureQueriesContext(connection) as queries:
        assert route(ids) == len(ids)
    route_pending()
    return len(queries.captured_queries)


def test_the_statements_of_a_routed_chunk_do_not_grow_with_the_chunk(ingest: Any, providers: None) -> None:
    publish(demo.ABANDONED_CART, key="abandoned-cart")
    _statements_routing(ingest, 1, "warm")  # per-process caches load here
    small = _statements_routing(ingest, 2, "small")
    large = _statements_routing(ingest, 20, "large")
    assert Enrollment.objects.count() == 23
    assert large == small


def test_a_chunk_whose_enrollment_was_started_concurrently_rolls_back() -> None:
    existing = EnrollmentFactory.create()
    now = timezone.now()
    again = Enrollment(
        journey_id=existing.journey_id,
        version_id=existing.version_id,
        customer_id=existing.customer_id,
        status=EnrollmentStatus.ACTIVE,
        step="done",
        entered_at=now,
        created_at=now,
        updated_at=now,
    )
    with pytest.raises(EnrollmentStartConflict), transaction.atomic():
        enrollments_insert([again])
    assert list(Enrollment.objects.values_list("id", flat=True)) == [existing.id]


def test_events_no_journey_cares_about_are_not_read_by_journeys(ingest: Any) -> None:
    publish(demo.ABANDONED_CART, key="abandoned-cart")
    assert (
        ingest.post("batch", {"batch": [{"type": "track", "userId": "v", "event": "Product Viewed"}]}).status_code
        == 200
    )
    ids = list(Event.objects.values_list("id", flat=True))
    with CaptureQueriesContext(connection) as queries:
        route(ids)
    assert not [q for q in queries.captured_queries if '"profiles_event"."properties" AS "properties"' in q["sql"]]
