"""Segments in real time: membership follows the events routed, through real ingestion and
routing, with exactly one Segment Entered / Segment Exited event per change."""

import threading
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.core import metrics
from journeys import segments
from journeys.conditions import compile_condition
from journeys.models import Segment, SegmentMembership
from journeys.segments import (
    DbEventHistory,
    live_segments,
    segment_errors,
    segments_recheck,
    segments_update,
    validate_segment_condition,
)
from journeys.tasks import recheck_segments
from orchestration.models import RouteLog
from orchestration.routing import route
from profiles.computed_traits import computed_trait_create
from profiles.merging import MergeRequest, customer_merge, customers_merge
from profiles.models import Customer, Event, EventOutbox, Identity
from profiles.privacy.services import customer_erase
from tests.factories import CustomerFactory, IdentityFactory
from tests.journeys.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

VIP = {"field": "traits.tier", "op": "equals", "value": "vip"}


def route_all() -> None:
    """Route everything on the outbox, and what routing itself ingests, until nothing is left."""
    for _ in range(10):
        ids = list(EventOutbox.objects.values_list("event_id", flat=True))
        if not ids:
            return
        route(ids)
    raise AssertionError("routing did not settle: an event kept producing events")


def customer(user_id: str) -> Customer:
    return Identity.objects.get(kind="user_id", value=user_id).customer


def segment_events(name: str | None = None) -> list[tuple[str, dict[str, Any], UUID]]:
    events = Event.objects.filter(name__in=[name] if name else ["Segment Entered", "Segment Exited"]).order_by("id")
    return [(e.name, e.properties, e.customer_id) for e in events]


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    segments.segments_changed()


@pytest.fixture
def vip() -> Segment:
    return SegmentFactory.create(key="vip", name="VIP", condition=VIP)


def test_identify_traits_enter_a_segment_and_the_entry_is_an_event(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    ann = customer("ann")
    assert list(SegmentMembership.objects.values_list("segment__key", "customer_id")) == [("vip", ann.id)]
    assert segment_events() == [("Segment Entered", {"segment": "vip", "segment_name": "VIP"}, ann.id)]


def test_the_segment_event_comes_from_the_journeys_source_and_is_routed(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    entered = Event.objects.get(name="Segment Entered")
    assert (entered.source.name, entered.type, entered.user_id) == ("throughline-journeys", "track", "ann")
    assert RouteLog.objects.filter(event_id=entered.id).exists()


def test_a_customer_outside_the_condition_does_not_enter(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "bob", "traits": {"tier": "basic"}})
    route_all()
    assert (SegmentMembership.objects.count(), segment_events()) == (0, [])


def test_traits_that_stop_matching_exit_the_segment(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "basic"}})
    route_all()
    ann = customer("ann")
    assert SegmentMembership.objects.count() == 0
    assert segment_events() == [
        ("Segment Entered", {"segment": "vip", "segment_name": "VIP"}, ann.id),
        ("Segment Exited", {"segment": "vip", "segment_name": "VIP"}, ann.id),
    ]


def test_entering_again_after_exiting_is_a_new_event(ingest: Any, vip: Segment) -> None:
    for tier in ("vip", "basic", "vip"):
        ingest.post("identify", {"userId": "ann", "traits": {"tier": tier}})
        route_all()
    assert [name for name, _, _ in segment_events()] == ["Segment Entered", "Segment Exited", "Segment Entered"]


def test_events_that_change_nothing_emit_nothing(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip", "city": "Lyon"}})
    ingest.post("track", {"userId": "ann", "event": "Page Viewed"})
    route_all()
    assert len(segment_events()) == 1


def test_updating_the_same_customer_twice_records_the_change_once(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    ann = customer("ann")
    first = segments_update(customer_ids=[ann.id])
    second = segments_update(customer_ids=[ann.id])
    assert (len(first), second, len(segment_events())) == (1, [], 1)


def test_a_segment_change_reaches_a_customer_known_only_by_email(vip: Segment) -> None:
    person = IdentityFactory.create(kind="email", value="cy@example.com", customer__traits={"tier": "vip"}).customer

    segments_update(customer_ids=[person.id])

    assert [(name, customer_id) for name, _, customer_id in segment_events()] == [("Segment Entered", person.id)]
    assert Customer.objects.count() == 1


def test_a_chunk_with_many_customers_updates_each(ingest: Any, vip: Segment) -> None:
    batch = [
        {"type": "identify", "userId": f"u{i}", "traits": {"tier": "vip" if i % 2 else "basic"}, "messageId": f"m{i}"}
        for i in range(10)
    ]
    ingest.post("batch", {"batch": batch})
    route_all()
    members = set(SegmentMembership.objects.values_list("customer_id", flat=True))
    assert members == {customer(f"u{i}").id for i in range(1, 10, 2)}
    assert len(segment_events("Segment Entered")) == 5


def test_computed_traits_are_read(ingest: Any) -> None:
    computed_trait_create(name="orders", kind="count", event_name="Order Completed")
    SegmentFactory.create(key="loyal", condition={"field": "computed.orders", "op": "gte", "value": 2})
    ingest.post("track", {"userId": "ann", "event": "Order Completed"})
    route_all()
    assert SegmentMembership.objects.count() == 0
    ingest.post("track", {"userId": "ann", "event": "Order Completed"})
    route_all()
    assert list(SegmentMembership.objects.values_list("segment__key", flat=True)) == ["loyal"]


def test_a_segment_can_refer_to_another_and_both_change_in_one_pass(ingest: Any, vip: Segment) -> None:
    SegmentFactory.create(
        key="vip-in-lyon",
        name="VIP in Lyon",
        condition={"all": [{"segment": "vip"}, {"field": "traits.city", "op": "equals", "value": "Lyon"}]},
    )
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip", "city": "Lyon"}})
    route_all()
    assert sorted(SegmentMembership.objects.values_list("segment__key", flat=True)) == ["vip", "vip-in-lyon"]


def test_performed_counts_the_customers_event_history(ingest: Any) -> None:
    SegmentFactory.create(
        key="repeat-buyers",
        condition={
            "performed": {
                "event": "Order Completed",
                "where": {"field": "event.properties.total", "op": "gte", "value": 50},
                "times": {"gte": 2},
                "within": {"days": 30},
            }
        },
    )
    ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": 80}})
    ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": 10}})
    route_all()
    assert SegmentMembership.objects.count() == 0
    ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": 120}})
    route_all()
    assert list(SegmentMembership.objects.values_list("segment__key", flat=True)) == ["repeat-buyers"]


def test_consent_is_read_when_a_segment_needs_it(ingest: Any) -> None:
    SegmentFactory.create(key="sms-ok", condition={"consent": {"purpose": "marketing", "channel": "sms"}})
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    assert SegmentMembership.objects.count() == 0
    # Consent is recorded by the routing handler that runs before segments, in the same chunk.
    ingest.post("identify", {"userId": "ann", "traits": {"consent": {"marketing": {"sms": True}}}})
    route_all()
    assert list(SegmentMembership.objects.values_list("segment__key", flat=True)) == ["sms-ok"]


def test_segment_events_do_not_feed_on_themselves(ingest: Any) -> None:
    # Evaluated on its own Segment Entered event, this segment would exit at once.
    SegmentFactory.create(key="newcomers", condition={"performed": {"event": "Segment Entered", "times": {"eq": 0}}})
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route(list(EventOutbox.objects.values_list("event_id", flat=True)))
    route([Event.objects.get(name="Segment Entered").id])
    assert [name for name, _, _ in segment_events()] == ["Segment Entered"]


def test_a_new_segment_is_used_from_the_next_chunk(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip", "city": "Lyon"}})
    route_all()
    SegmentFactory.create(key="lyon", condition={"field": "traits.city", "op": "equals", "value": "Lyon"})
    ingest.post("track", {"userId": "ann", "event": "Page Viewed"})
    route_all()
    assert sorted(SegmentMembership.objects.values_list("segment__key", flat=True)) == ["lyon", "vip"]


def test_a_changed_condition_is_used_from_the_next_chunk(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    vip.condition = {"field": "traits.tier", "op": "equals", "value": "platinum"}
    vip.save()
    ingest.post("track", {"userId": "ann", "event": "Page Viewed"})
    route_all()
    assert [name for name, _, _ in segment_events()] == ["Segment Entered", "Segment Exited"]


def test_a_disabled_segment_is_not_evaluated(ingest: Any) -> None:
    SegmentFactory.create(key="off", condition=VIP, enabled=False)
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    route_all()
    assert SegmentMembership.objects.count() == 0


def test_a_segment_that_does_not_compile_is_left_out_and_reported(ingest: Any, vip: Segment) -> None:
    SegmentFactory.create(key="broken", condition={"field": "traits.tier", "op": "like", "value": "v"})
    assert [s.key for s in live_segments()] == ["vip"]
    assert list(segment_errors()) == ["broken"]


def test_segments_are_ordered_after_the_segments_they_refer_to() -> None:
    SegmentFactory.create(key="a-depends", condition={"segment": "z-base"})
    SegmentFactory.create(key="z-base", condition=VIP)
    assert [s.key for s in live_segments()] == ["z-base", "a-depends"]


def test_metrics_count_entries_and_exits(ingest: Any, vip: Segment, django_capture_on_commit_callbacks: Any) -> None:
    counter = metrics.SEGMENT_CHANGES.labels(segment="vip", change="entered")
    before = counter._value.get()
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    with django_capture_on_commit_callbacks(execute=True):
        segments_update(customer_ids=[customer("ann").id])
    assert counter._value.get() == before + 1


def test_merging_gives_the_survivor_the_losers_memberships() -> None:
    other = SegmentFactory.create(key="other", condition=VIP)
    older = SegmentMembershipFactory.create(segment__key="vip", segment__condition=VIP)
    newer = SegmentMembershipFactory.create(segment=other)
    shared = SegmentMembershipFactory.create(segment=other, customer_id=older.customer_id)
    Customer.objects.filter(id=older.customer_id).update(created_at=timezone.now() - timedelta(days=1))
    customer_merge(customer_ids=[older.customer_id, newer.customer_id], reason="same", actor="test")
    rows = sorted(SegmentMembership.objects.values_list("segment__key", "customer_id"))
    assert rows == [("other", older.customer_id), ("vip", older.customer_id)]
    assert SegmentMembership.objects.get(id=shared.id).entered_at == min(shared.entered_at, newer.entered_at)


def test_one_call_merging_two_groups_gives_each_survivor_its_own_losers_memberships() -> None:
    vip = SegmentFactory.create(key="vip", condition=VIP)
    other = SegmentFactory.create(key="other", condition=VIP)
    first, second = CustomerFactory.create_batch(2)
    Customer.objects.filter(id__in=[first.id, second.id]).update(created_at=timezone.now() - timedelta(days=1))
    first_loser = SegmentMembershipFactory.create(segment=vip)
    second_loser = SegmentMembershipFactory.create(segment=other)
    early = timezone.now() - timedelta(days=3)
    SegmentMembershipFactory.create(segment=other, customer_id=second.id)
    SegmentMembership.objects.filter(id=second_loser.id).update(entered_at=early)
    requests = [
        MergeRequest(customer_ids=[first.id, first_loser.customer_id], reason="same"),
        MergeRequest(customer_ids=[second.id, second_loser.customer_id], reason="same"),
    ]
    customers_merge(requests=requests, actor="test")
    rows = sorted(SegmentMembership.objects.values_list("segment__key", "customer_id", "entered_at"))
    assert [(key, customer_id) for key, customer_id, _ in rows] == sorted([("vip", first.id), ("other", second.id)])
    assert SegmentMembership.objects.get(customer_id=second.id).entered_at == early


def test_the_merge_hooks_take_the_same_statements_for_one_merge_or_five() -> None:
    def statements(groups: int) -> int:
        requests = []
        for _ in range(groups):
            survivor, merged = CustomerFactory.create_batch(2)
            Customer.objects.filter(id=survivor.id).update(created_at=timezone.now() - timedelta(days=1))
            SegmentMembershipFactory.create(customer_id=merged.id)
            requests.append(MergeRequest(customer_ids=[survivor.id, merged.id], reason="same"))
        with CaptureQueriesContext(connection) as queries:
            customers_merge(requests=requests, actor="test")
        return len(queries)

    assert statements(1) == statements(5)


def test_erasing_a_customer_deletes_their_memberships(ingest: Any, vip: Segment) -> None:
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    ingest.post("identify", {"userId": "bob", "traits": {"tier": "vip"}})
    route_all()
    customer_erase(customer_id=customer("ann").id, suppress=False, reason="asked", actor="test")
    assert list(SegmentMembership.objects.values_list("customer_id", flat=True)) == [customer("bob").id]


def test_time_based_members_are_rechecked_as_time_passes(ingest: Any) -> None:
    SegmentFactory.create(
        key="recent-buyers", condition={"performed": {"event": "Order Completed", "within": {"days": 7}}}
    )
    ingest.post("track", {"userId": "ann", "event": "Order Completed"})
    route_all()
    assert segments_recheck() == 0
    assert segments_recheck(now=timezone.now() + timedelta(days=8)) == 1
    assert [name for name, _, _ in segment_events()] == ["Segment Entered", "Segment Exited"]


def test_db_history_counts_recent_events_by_name_since_and_where(ingest: Any) -> None:
    for total in (10, 60, 90):
        ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": total}})
    ingest.post("track", {"userId": "ann", "event": "Page Viewed"})
    history = DbEventHistory(customer("ann").id)
    big = compile_condition({"field": "event.properties.total", "op": "gt", "value": 50})
    now = timezone.now()
    counts = (
        history.count("Order Completed", None, None),
        history.count("Order Completed", now - timedelta(hours=1), big),
        history.count("Order Completed", now + timedelta(hours=1), None),
        history.count("Refund", None, None),
    )
    assert counts == (3, 2, 0, 0)


def test_db_history_is_bounded(ingest: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(segments, "HISTORY_LIMIT", 2)
    for i in range(4):
        ingest.post("track", {"userId": "ann", "event": "Order Completed", "messageId": f"o{i}"})
    assert DbEventHistory(customer("ann").id).count("Order Completed", None, None) == 2


def test_segments_cannot_read_the_routed_event() -> None:
    errors = validate_segment_condition({"any": [VIP, {"field": "event.name", "op": "equals", "value": "x"}]})
    assert [(e.path, e.message) for e in errors] == [
        ("/any/1/field", "a segment is about the customer: use traits, or `performed` for events")
    ]


def test_segment_validation_accepts_performed_over_event_fields() -> None:
    spec = {
        "performed": {"event": "Order Completed", "where": {"field": "event.properties.total", "op": "gt", "value": 1}}
    }
    assert validate_segment_condition(spec) == []


@pytest.mark.django_db(transaction=True)
def test_two_routers_updating_one_customer_at_once_record_one_entry(ingest: Any) -> None:
    SegmentFactory.create(key="vip", name="VIP", condition=VIP)
    ingest.post("identify", {"userId": "ann", "traits": {"tier": "vip"}})
    ann = customer("ann").id
    barrier = threading.Barrier(2)
    made: list[int] = []

    def update() -> None:
        barrier.wait()
        try:
            made.append(len(segments_update(customer_ids=[ann])))
        finally:
            connection.close()

    threads = [threading.Thread(target=update) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert (sorted(made), len(segment_events("Segment Entered"))) == ([0, 1], 1)


def test_the_periodic_task_rechecks_time_based_segments(ingest: Any) -> None:
    segment = SegmentFactory.create(
        key="recently-seen", condition={"field": "traits.last_seen", "op": "within_last", "value": {"days": 1}}
    )
    ingest.post("identify", {"userId": "ann", "traits": {"last_seen": timezone.now().isoformat()}})
    route_all()
    SegmentMembership.objects.filter(segment=segment).update(entered_at=timezone.now() - timedelta(days=2))
    Customer.objects.filter(id=customer("ann").id).update(
        traits={"last_seen": (timezone.now() - timedelta(days=2)).isoformat()}
    )
    assert recheck_segments.apply().get() == 1
    assert [name for name, _, _ in segment_events()] == ["Segment Entered", "Segment Exited"]


def test_membership_changes_are_made_once(vip: Segment) -> None:
    live = live_segments()[0]
    person = CustomerFactory.create().id
    now = timezone.now()
    enter, leave = segments.Change(live, person, True), segments.Change(live, person, False)
    made = [
        len(segments.memberships_apply(changes=[enter], now=now)),
        len(segments.memberships_apply(changes=[enter], now=now)),
        len(segments.memberships_apply(changes=[leave], now=now)),
        len(segments.memberships_apply(changes=[leave], now=now)),
    ]
    assert made == [1, 0, 1, 0]


def test_history_rows_are_each_customers_newest_first(ingest: Any) -> None:
    for total in (10, 60, 90):
        ingest.post("track", {"userId": "ann", "event": "Order Completed", "properties": {"total": total}})
    ids = [customer("ann").id, CustomerFactory.create().id]
    rows = segments._history_rows(ids, "Order Completed", timezone.now() - timedelta(hours=1))
    assert [row["properties"]["total"] for row in rows[ids[0]]] == [90, 60, 10]
    assert ids[1] not in rows


def test_merge_gives_the_survivor_the_losers_memberships() -> None:
    other = SegmentFactory.create(key="other", condition=VIP)
    older = SegmentMembershipFactory.create(segment__key="vip", segment__condition=VIP)
    newer = SegmentMembershipFactory.create(segment=other)
    shared = SegmentMembershipFactory.create(segment=other, customer_id=older.customer_id)
    segments.segments_on_customers_merged({older.customer_id: [newer.customer_id]})
    rows = sorted(SegmentMembership.objects.values_list("segment__key", "customer_id"))
    assert rows == [("other", older.customer_id), ("vip", older.customer_id)]
    assert SegmentMembership.objects.get(id=shared.id).entered_at == min(shared.entered_at, newer.entered_at)


def _vip_outside_routing(ingest: Any, user_id: str) -> Customer:
    """A customer whose traits say vip, written without routing (so no segment saw it yet)."""
    ingest.post("identify", {"userId": user_id, "traits": {"tier": "basic"}})
    route_all()
    Customer.objects.filter(id=customer(user_id).id).update(traits={"tier": "vip"})
    return customer(user_id)


def test_session_lifecycle_events_no_segment_reads_do_not_re_evaluate(ingest: Any, vip: Segment) -> None:
    ann = _vip_outside_routing(ingest, "ann")
    ingest.post("track", {"userId": "ann", "event": "Session Started"})
    route_all()
    assert not SegmentMembership.objects.exists()
    ingest.post("track", {"userId": "ann", "event": "Product Viewed"})
    route_all()
    assert list(SegmentMembership.objects.values_list("customer_id", flat=True)) == [ann.id]


def test_session_lifecycle_events_a_segment_counts_re_evaluate(ingest: Any, vip: Segment) -> None:
    SegmentFactory.create(key="sessions", condition={"performed": {"event": "Session Started", "times": {"gte": 0}}})
    ann = _vip_outside_routing(ingest, "ann")
    ingest.post("track", {"userId": "ann", "event": "Session Started"})
    route_all()
    assert SegmentMembership.objects.filter(segment=vip, customer_id=ann.id).exists()
