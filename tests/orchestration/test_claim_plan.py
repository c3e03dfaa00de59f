"""Routing's outbox claim keeps a fast plan whatever PostgreSQL's statistics say.

The statistics that broke it: an outbox drained by routing's DELETEs keeps its pages, and an
ANALYZE at that quiet moment (autovacuum's) records 0 rows over those pages, so the planner
takes the outbox for a one-row table until the next ANALYZE. The next load then met a claim
planned as a nested loop that re-ran the locking backlog scan once per outbox row: over 600 s
for 480 rows of a 40,000-row outbox, where the claim takes about 10 ms.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from orchestration.routing import route
from profiles.models import Event, EventOutbox
from tests.conftest import wait_until

PER_BATCH = 100


def _ingest(ingest: Any, count: int, prefix: str) -> list[int]:
    for start in range(0, count, PER_BATCH):
        batch = [
            {"type": "track", "anonymousId": f"a-{i % 50}", "event": "Viewed", "messageId": f"{prefix}-{i}"}
            for i in range(start, min(count, start + PER_BATCH))
        ]
        assert ingest.post("batch", {"batch": batch}).status_code == 200
    return list(Event.objects.filter(message_id__startswith=f"{prefix}-").order_by("id").values_list("id", flat=True))


@pytest.fixture
def outbox_analyzed_empty(ingest: Any) -> Iterator[None]:
    """The outbox drained (its pages kept) and ANALYZEd then, autovacuum off on it so that no
    later ANALYZE corrects the statistics while the test runs."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE profiles_eventoutbox SET (autovacuum_enabled = false)")
    _ingest(ingest, 200, "quiet")
    with connection.cursor() as cursor:
        # As routing's claims leave it: every row deleted, the table's pages still there.
        cursor.execute("DELETE FROM profiles_eventoutbox")
        cursor.execute("ANALYZE profiles_eventoutbox")
        cursor.execute("SELECT reltuples, relpages FROM pg_class WHERE relname = 'profiles_eventoutbox'")
        reltuples, relpages = cursor.fetchone()
    assert reltuples == 0 and relpages > 0, "the statistics this test is about"
    yield
    # In a test's transaction the setting goes with its rollback; a transactional test resets it.
    if not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE profiles_eventoutbox RESET (autovacuum_enabled)")


@pytest.mark.django_db
@override_settings(ROUTING_CLAIM_BACKLOG=500)
def test_a_claim_with_its_backlog_stays_fast_after_an_analyze_of_the_empty_outbox(
    ingest: Any, outbox_analyzed_empty: None
) -> None:
    ids = _ingest(ingest, 5000, "load")
    with connection.cursor() as cursor:
        # Before the fix this claim ran for minutes; the bound fails it in seconds instead.
        cursor.execute("SET LOCAL statement_timeout = '5s'")
    assert route(ids[:1]) == 500


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_routing_drains_a_load_that_follows_an_analyze_of_the_empty_outbox(
    ingest: Any, outbox_analyzed_empty: None, worker_factory: Any
) -> None:
    # Each batch's task names 100 events and takes up to 400 more as its backlog, as in
    # production (ROUTING_CLAIM_BACKLOG=500), from an outbox of 10,000 waiting events.
    _ingest(ingest, 10_000, "load")
    # The statement timeout bounds what a bad plan leaves running on the server after the test.
    worker_factory(env={"TEST_ROUTING_CLAIM_BACKLOG": "500", "PGOPTIONS": "-c statement_timeout=30s"})
    wait_until(lambda: not EventOutbox.objects.exists(), timeout=90, interval=0.2, message="the outbox drains")
