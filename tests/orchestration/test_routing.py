"""Routing: each accepted event is routed exactly once, whatever happens around it."""

import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings

from orchestration import routing
from orchestration.models import RouteLog
from orchestration.routing import route
from orchestration.tasks import sweep_outbox
from profiles.models import Event, EventOutbox


def _ingest_batch(ingest: Any, count: int, prefix: str = "m") -> list[int]:
    batch = [
        {"type": "track", "userId": f"u-{i % 7}", "event": "X", "messageId": f"{prefix}-{i}"} for i in range(count)
    ]
    assert ingest.post("batch", {"batch": batch}).json()["accepted"] == count
    return list(Event.objects.order_by("id").values_list("id", flat=True))


@pytest.mark.django_db
def test_routing_takes_events_off_the_outbox_and_records_them(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    assert route(ids) == 5
    # Only these events: routing handlers may ingest events of their own (Session Started).
    assert EventOutbox.objects.filter(event_id__in=ids).count() == 0
    assert sorted(RouteLog.objects.values_list("event_id", flat=True)) == ids


@pytest.mark.django_db
def test_routing_the_same_events_again_has_no_effect(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    route(ids)
    assert route(ids) == 0
    assert RouteLog.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_two_routers_racing_on_the_same_events_route_each_once(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 200)
    barrier = threading.Barrier(2)
    routed: list[int] = []

    def router() -> None:
        barrier.wait()
        try:
            routed.append(route(ids))
        finally:
            connection.close()

    threads = [threading.Thread(target=router) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(routed) == [0, 200]
    assert RouteLog.objects.count() == 200


@pytest.mark.django_db
def test_sweeper_leaves_fresh_events_to_their_tasks(ingest: Any) -> None:
    _ingest_batch(ingest, 3)
    assert sweep_outbox.apply(kwargs={"older_than_seconds": 60}).get() == 0


@pytest.mark.django_db
def test_sweeper_re_enqueues_stale_events_and_counts_the_attempt(ingest: Any) -> None:
    _ingest_batch(ingest, 3)
    assert sweep_outbox.apply(kwargs={"older_than_seconds": 0}).get() == 3
    assert list(EventOutbox.objects.values_list("attempts", flat=True)) == [1, 1, 1]


@pytest.mark.django_db
@override_settings(ROUTING_CLAIM_BACKLOG=500)
def test_a_router_takes_the_waiting_backlog_with_its_own_events(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    assert route(ids[:2]) == 5
    assert sorted(RouteLog.objects.values_list("event_id", flat=True)) == ids


@pytest.mark.django_db
@override_settings(ROUTING_CLAIM_BACKLOG=500)
def test_the_task_of_an_event_routed_as_backlog_finds_nothing_to_do(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    route(ids[:1])
    # What it still routes are the Session Started events the first chunk ingested, not its own.
    route(ids[1:])
    assert RouteLog.objects.filter(event_id__in=ids).count() == 5


@pytest.mark.django_db
@override_settings(ROUTING_CLAIM_BACKLOG=3)
def test_the_backlog_claim_is_bounded_by_the_setting(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    assert route(ids[:1]) == 3


@pytest.mark.django_db
@override_settings(ROUTING_CLAIM_BACKLOG=500)
def test_an_event_that_failed_routing_is_not_taken_as_backlog(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    EventOutbox.objects.filter(event_id=ids[4]).update(attempts=1)
    assert route(ids[:1]) == 4
    assert list(EventOutbox.objects.filter(event_id__in=ids).values_list("event_id", flat=True)) == [ids[4]]


@pytest.mark.django_db
@override_settings(ROUTING_CLAIM_BACKLOG=500)
def test_a_failed_chunk_counts_an_attempt_against_every_event_it_claimed(
    ingest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _ingest_batch(ingest, 5)

    def failing(events: list[Any]) -> None:
        raise RuntimeError("a handler failed")

    monkeypatch.setattr(routing, "_handlers", [*routing.handlers(), failing])
    with pytest.raises(RuntimeError):
        route(ids[:1])
    assert sorted(EventOutbox.objects.values_list("event_id", "attempts")) == [(i, 1) for i in ids]


@pytest.mark.django_db(transaction=True)
@override_settings(ROUTING_CLAIM_BACKLOG=500)
def test_a_router_taking_the_backlog_skips_events_another_router_holds(ingest: Any) -> None:
    ids = _ingest_batch(ingest, 5)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                list(EventOutbox.objects.select_for_update().filter(event_id__in=ids[:2]))
                held.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(timeout=30)
    try:
        routed = route(ids)
    finally:
        release.set()
        thread.join(timeout=30)
    assert routed == 3
    assert sorted(EventOutbox.objects.filter(event_id__in=ids).values_list("event_id", flat=True)) == ids[:2]
