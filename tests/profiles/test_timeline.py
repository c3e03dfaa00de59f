"""The customer 360 timeline: every kind of entry, newest first, paged by a keyset cursor, and the
read-only page in the admin."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from django.test import Client
from rest_framework.renderers import JSONRenderer

from orchestration.routing import route
from profiles import contracts
from profiles.computed_traits import computed_trait_create
from profiles.contracts import TimelineEntry, TimelineQuery
from profiles.customer360.apis import TimelineEntryOutput
from profiles.customer360.timeline import TimelinePage, cursor_encode, customer_timeline
from profiles.merging import customer_merge, customer_unmerge
from profiles.models import Customer, Event, MergeRecord
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.services import consent_set
from profiles.selectors import customer_find
from tests.factories import CustomerFactory, SessionFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _iso(minutes: int) -> str:
    return _at(minutes).isoformat().replace("+00:00", "Z")


@pytest.fixture
def customer(ingest: Any) -> Customer:
    """Events at minutes 1, 3 and 5; a session started at 2 and ended at 6; consent at 4; a
    profile merged in at the time the merge ran (now, after all of them)."""
    for minute in (1, 3, 5):
        ingest.post("track", {"userId": "u-360", "event": f"Minute {minute}", "timestamp": _iso(minute)})
    found = customer_find(kind="user_id", value="u-360")
    assert found is not None
    SessionFactory(customer=found, channel="web", started_at=_at(2), last_seen_at=_at(6), ended_at=_at(6))
    consent_set(
        customer_id=found.id,
        choices=[ConsentChoice("marketing", "email", "granted")],
        origin="api",
        actor="token:test",
        changed_at=_at(4),
    )
    newer = CustomerFactory.create()
    Customer.objects.filter(id=newer.id).update(created_at=found.created_at + timedelta(seconds=1))
    assert customer_merge(customer_ids=[found.id, newer.id], reason="same person", actor="test").survivor_id == found.id
    return found


def _page(api: Any, customer_id: UUID, **params: Any) -> dict[str, Any]:
    response = api(f"/api/v1/customers/{customer_id}/timeline", **params)
    assert response.status_code == 200, response.content
    return response.json()


def _all(api: Any, customer_id: UUID, page_size: int, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    body = _page(api, customer_id, page_size=page_size, **params)
    entries += body["results"]
    while body["next_cursor"]:
        body = _page(api, customer_id, page_size=page_size, cursor=body["next_cursor"], **params)
        entries += body["results"]
    return entries


def test_every_kind_appears_newest_first(api: Any, customer: Customer) -> None:
    results = _page(api, customer.id)["results"]
    assert [(r["kind"], r["data"].get("name", "")) for r in results] == [
        ("merge", ""),
        ("session_ended", ""),
        ("event", "Minute 5"),
        ("consent_change", ""),
        ("event", "Minute 3"),
        ("session_started", ""),
        ("event", "Minute 1"),
    ]


def test_entries_carry_their_time_channel_and_detail(api: Any, customer: Customer) -> None:
    results = _page(api, customer.id, kinds="event,consent_change")["results"]
    assert results[0]["at"] == _iso(5)
    assert (results[0]["channel"], results[0]["data"]["type"]) == ("web", "track")
    assert (results[1]["data"]["purpose"], results[1]["data"]["status"]) == ("marketing", "granted")


def test_pages_concatenate_to_the_whole_timeline(api: Any, customer: Customer) -> None:
    whole = _page(api, customer.id)["results"]
    assert _all(api, customer.id, page_size=2) == whole


def test_the_last_page_has_no_next(api: Any, customer: Customer) -> None:
    body = _page(api, customer.id, page_size=7)
    assert (len(body["results"]), body["next"], body["next_cursor"]) == (7, None, None)


def test_next_is_a_link_to_the_following_page(api: Any, customer: Customer) -> None:
    body = _page(api, customer.id, page_size=3)
    following = api(body["next"].split("testserver")[1]).json()
    assert [r["kind"] for r in following["results"]] == ["consent_change", "event", "session_started"]


def test_entries_at_the_same_instant_are_neither_lost_nor_repeated_across_pages(api: Any, ingest: Any) -> None:
    batch = [
        {"type": "track", "userId": "u-tie", "event": f"Tie {i}", "timestamp": _iso(0), "messageId": f"tie-{i}"}
        for i in range(7)
    ]
    ingest.post("batch", {"batch": batch})
    found = customer_find(kind="user_id", value="u-tie")
    assert found is not None
    SessionFactory(customer=found, started_at=_at(0))
    SessionFactory(customer=found, started_at=_at(0))
    consent_set(
        customer_id=found.id,
        choices=[ConsentChoice("analytics", "*", "denied")],
        origin="api",
        actor="token:test",
        changed_at=_at(0),
    )
    entries = _all(api, found.id, page_size=2)
    assert len(entries) == len({(e["kind"], e["id"]) for e in entries}) == 10


def _timeline(customer: Customer, **kwargs: Any) -> TimelinePage:
    page = customer_timeline(customer_id=customer.id, **kwargs)
    assert page is not None
    return page


def _rendered(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    return orjson.loads(JSONRenderer().render(TimelineEntryOutput(entries, many=True).data))


def test_walking_pages_of_two_gives_the_one_page_of_everything(customer: Customer) -> None:
    customer_unmerge(record_id=MergeRecord.objects.get().id, actor="admin:support")
    SessionFactory(customer=customer, started_at=_at(3))
    walked: list[TimelineEntry] = []
    page = _timeline(customer, limit=2)
    walked += page.entries
    while page.next:
        page = _timeline(customer, before=page.next, limit=2)
        walked += page.entries
    everything = _timeline(customer, limit=100)
    assert len(walked) > 4
    assert _rendered(walked) == _rendered(everything.entries)


def test_the_api_renders_entries_as_the_declared_serializer_does(api: Any, customer: Customer) -> None:
    entries = _timeline(customer, limit=50).entries
    declared = orjson.loads(JSONRenderer().render(TimelineEntryOutput(entries, many=True).data))
    assert _page(api, customer.id)["results"] == declared


def test_kinds_filter_the_timeline(api: Any, customer: Customer) -> None:
    results = _page(api, customer.id, kinds="session_started,session_ended")["results"]
    assert [r["kind"] for r in results] == ["session_ended", "session_started"]


def test_an_unmerge_is_an_entry_of_its_own(api: Any, customer: Customer) -> None:
    customer_unmerge(record_id=MergeRecord.objects.get().id, actor="admin:support")
    results = _page(api, customer.id, kinds="merge,unmerge")["results"]
    assert [(r["kind"], r["data"]["actor"]) for r in results] == [("unmerge", "admin:support"), ("merge", "test")]


def test_consent_changes_of_a_merged_profile_are_on_the_survivors_timeline(api: Any, customer: Customer) -> None:
    merged = Customer.objects.get(merged_into=customer)
    consent_set(
        customer_id=merged.id,
        choices=[ConsentChoice("marketing", "sms", "denied")],
        origin="webhook",
        actor="twilio",
        changed_at=_at(7),
    )
    results = _page(api, customer.id, kinds="consent_change")["results"]
    assert [r["data"]["channel"] for r in results] == ["sms", "email"]


def test_a_merged_profile_id_shows_the_survivors_timeline(api: Any, customer: Customer) -> None:
    merged = Customer.objects.get(merged_into=customer)
    assert _page(api, merged.id) == _page(api, customer.id)


def test_sources_other_apps_register_are_merged_in_order(
    api: Any, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deliveries(query: TimelineQuery) -> list[TimelineEntry]:
        entry = TimelineEntry(at=_at(4), kind="delivery", key="d1", id="d1", channel="email", data={"to": "x"})
        return [entry] if query.before is None or (entry.at, entry.kind, entry.key) < query.before else []

    monkeypatch.setattr(contracts, "_timeline_sources", [(frozenset({"delivery"}), deliveries)])
    results = _page(api, customer.id, kinds="event,consent_change,delivery")["results"]
    assert [r["kind"] for r in results] == ["event", "delivery", "consent_change", "event", "event"]


def test_a_page_of_a_large_timeline_takes_a_few_queries(
    api: Any, ingest: Any, django_assert_max_num_queries: Any
) -> None:
    batch = [{"type": "track", "userId": "u-big", "event": "E", "timestamp": _iso(i)} for i in range(300)]
    ingest.post("batch", {"batch": batch})
    found = customer_find(kind="user_id", value="u-big")
    assert found is not None
    cursor = _page(api, found.id, page_size=100)["next_cursor"]
    with django_assert_max_num_queries(12):
        assert len(_page(api, found.id, page_size=100, cursor=cursor)["results"]) == 100


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": cursor_encode((T0, "event", "not-a-number"))},
        {"cursor": cursor_encode((T0, "session_started", "zz"))},
        {"cursor": cursor_encode((T0, "event", "99999999999999999999"))},
        {"page_size": 0},
        {"page_size": 10_000},
        {"page_size": "ten"},
        {"kinds": "event,gossip"},
    ],
)
def test_bad_parameters_are_a_400(api: Any, customer: Customer, params: dict[str, Any]) -> None:
    response = api(f"/api/v1/customers/{customer.id}/timeline", **params)
    assert response.status_code == 400, response.content


def test_the_timeline_of_an_unknown_customer_is_a_404(api: Any) -> None:
    assert api("/api/v1/customers/00000000-0000-0000-0000-000000000000/timeline").status_code == 404


def test_consent_recorded_from_events_shows_on_the_timeline(api: Any, ingest: Any) -> None:
    ingest.post(
        "identify",
        {"userId": "u-c", "timestamp": _iso(1), "traits": {"consent": {"marketing": {"push": False}}}},
    )
    route(list(Event.objects.values_list("id", flat=True)))
    found = customer_find(kind="user_id", value="u-c")
    assert found is not None
    results = _page(api, found.id, kinds="consent_change")["results"]
    assert [(r["at"], r["data"]["origin"]) for r in results] == [(_iso(1), "identify_trait")]


# --- The admin page ---------------------------------------------------------------------------


def test_the_admin_page_shows_identities_traits_consent_and_timeline(admin_client: Client, customer: Customer) -> None:
    Customer.objects.filter(id=customer.id).update(traits={"plan": "gold"})
    page = admin_client.get(f"/admin/profiles/customer/{customer.id}/overview/").content.decode()
    assert "u-360" in page
    assert "gold" in page
    assert page.count('class="consent"') == 1
    assert page.count('class="timeline-entry') == 7


def test_the_admin_page_shows_computed_traits(admin_client: Client, ingest: Any) -> None:
    computed_trait_create(name="order_count", kind="count", event_name="Order Completed")
    ingest.post("track", {"userId": "u-orders", "event": "Order Completed"})
    route(list(Event.objects.values_list("id", flat=True)))
    found = customer_find(kind="user_id", value="u-orders")
    assert found is not None
    page = admin_client.get(f"/admin/profiles/customer/{found.id}/overview/").content.decode()
    assert '<tr class="computed-trait"><th>order_count</th><td>1</td></tr>' in page


def test_the_admin_page_pages_the_timeline(admin_client: Client, ingest: Any) -> None:
    batch = [{"type": "track", "userId": "u-long", "event": f"E{i}", "timestamp": _iso(i)} for i in range(60)]
    ingest.post("batch", {"batch": batch})
    found = customer_find(kind="user_id", value="u-long")
    assert found is not None
    first = admin_client.get(f"/admin/profiles/customer/{found.id}/overview/").content.decode()
    older = first.split('class="older" href="')[1].split('"')[0].replace("&amp;", "&")
    second = admin_client.get(f"/admin/profiles/customer/{found.id}/overview/{older}").content.decode()
    assert second.count('class="timeline-entry') == 10


def test_the_admin_list_links_to_the_page(admin_client: Client, customer: Customer) -> None:
    listing = admin_client.get("/admin/profiles/customer/").content.decode()
    assert f"/admin/profiles/customer/{customer.id}/overview/" in listing
