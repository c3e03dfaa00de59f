"""Merging and unmerging profiles: the API, the rules, and concurrent merges on PostgreSQL."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from profiles.merging import MergeRequest, customer_merge, customers_merge
from profiles.models import Customer, Event, Identity, MergeRecord, MergeRefusal
from tests.factories import CustomerFactory, IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(client: Any, api_token: Any) -> Any:
    def call(path: str, body: Any = None) -> Any:
        return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}")

    return call


@pytest.fixture
def two_people(ingest: Any) -> tuple[Customer, Customer]:
    ingest.post("track", {"anonymousId": "phone-anon", "event": "Opened App"})
    ingest.post("identify", {"userId": "ann", "traits": {"plan": "pro"}})
    older = Identity.objects.get(value="phone-anon").customer
    newer = Identity.objects.get(value="ann").customer
    Customer.objects.filter(id=older.id).update(created_at=timezone.now() - timedelta(days=1))
    return Customer.objects.get(id=older.id), newer


def test_merge_keeps_the_oldest_and_moves_identities_and_events(post: Any, two_people: Any) -> None:
    older, newer = two_people
    response = post(
        "/api/v1/customers/merge", {"customer_ids": [str(newer.id), str(older.id)], "reason": "same person"}
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"survivor_id": str(older.id), "merged_ids": [str(newer.id)]}
    assert set(Identity.objects.values_list("customer_id", flat=True)) == {older.id}
    assert set(Event.objects.values_list("customer_id", flat=True)) == {older.id}
    assert Customer.objects.get(id=newer.id).merged_into_id == older.id


def test_old_ids_resolve_to_the_survivor(post: Any, api: Any, two_people: Any) -> None:
    older, newer = two_people
    post("/api/v1/customers/merge", {"customer_ids": [str(older.id), str(newer.id)], "reason": "same"})
    body = api(f"/api/v1/customers/{newer.id}").json()
    assert body["id"] == str(older.id)
    assert body["merged_ids"] == [str(newer.id)]


def test_merge_records_who_did_it_and_why(post: Any, api_token: Any, two_people: Any) -> None:
    older, newer = two_people
    post("/api/v1/customers/merge", {"customer_ids": [str(older.id), str(newer.id)], "reason": "ticket 42"})
    record = MergeRecord.objects.get()
    assert (record.actor, record.reason) == (f"token:{api_token.name}", "ticket 42")
    assert record.identities == [["user_id", "ann"]]


def test_merging_two_known_users_is_refused_with_the_reason(post: Any) -> None:
    first = IdentityFactory.create(kind="user_id", value="u-1").customer
    second = IdentityFactory.create(kind="user_id", value="u-2").customer
    response = post("/api/v1/customers/merge", {"customer_ids": [str(first.id), str(second.id)], "reason": "x"})
    assert response.status_code == 409
    assert response.json()["detail"] == "the merged profile would hold 2 user_id identities; the limit is 1"
    assert MergeRefusal.objects.get().actor.startswith("token:")


def test_merge_of_unknown_customer_is_404(post: Any) -> None:
    known = CustomerFactory.create()
    body = {"customer_ids": [str(known.id), "00000000-0000-0000-0000-000000000001"], "reason": "x"}
    assert post("/api/v1/customers/merge", body).status_code == 404


def test_merge_needs_two_ids(post: Any) -> None:
    response = post("/api/v1/customers/merge", {"customer_ids": [str(CustomerFactory.create().id)], "reason": "x"})
    assert response.status_code == 400


def test_traits_merge_newest_per_key(two_people: Any) -> None:
    older, newer = two_people
    Customer.objects.filter(id=older.id).update(
        traits={"plan": "free", "city": "Oslo"}, trait_times={"plan": "2026-01-01", "city": "2026-06-01"}
    )
    Customer.objects.filter(id=newer.id).update(
        traits={"plan": "pro", "city": "Bergen"}, trait_times={"plan": "2026-05-01", "city": "2026-02-01"}
    )
    customer_merge(customer_ids=[older.id, newer.id], reason="t", actor="test")
    assert Customer.objects.get(id=older.id).traits == {"plan": "pro", "city": "Oslo"}


def test_undo_gives_back_identities_events_and_traits(post: Any, two_people: Any) -> None:
    older, newer = two_people
    post("/api/v1/customers/merge", {"customer_ids": [str(older.id), str(newer.id)], "reason": "oops"})
    merge_id = MergeRecord.objects.get().id
    response = post(f"/api/v1/merges/{merge_id}/undo")
    assert response.status_code == 200
    assert response.json()["undone_by"].startswith("token:")
    restored = Customer.objects.get(id=newer.id)
    assert restored.merged_into_id is None
    assert restored.traits == {"plan": "pro"}
    assert Identity.objects.get(value="ann").customer_id == newer.id
    assert Event.objects.get(user_id="ann").customer_id == newer.id


def test_undone_profiles_are_not_merged_again_automatically(post: Any, two_people: Any) -> None:
    older, newer = two_people
    customer_merge(customer_ids=[older.id, newer.id], reason="t", actor="test")
    post(f"/api/v1/merges/{MergeRecord.objects.get().id}/undo")
    outcome = customer_merge(customer_ids=[older.id, newer.id], reason="again", actor="ingestion")
    assert outcome.refused == "these profiles were separated by an unmerge"


def test_undo_twice_answers_the_same(post: Any, two_people: Any) -> None:
    older, newer = two_people
    customer_merge(customer_ids=[older.id, newer.id], reason="t", actor="test")
    path = f"/api/v1/merges/{MergeRecord.objects.get().id}/undo"
    assert post(path).json() == post(path).json()


def test_history_lists_merges_and_refusals(api: Any, two_people: Any) -> None:
    older, newer = two_people
    customer_merge(customer_ids=[older.id, newer.id], reason="t", actor="test")
    body = api(f"/api/v1/customers/{older.id}/merges").json()
    assert [m["merged_id"] for m in body["merges"]] == [str(newer.id)]
    assert body["refusals"] == []


def test_chains_stay_one_hop(two_people: Any) -> None:
    older, newer = two_people
    third = CustomerFactory.create()
    Customer.objects.filter(id=third.id).update(created_at=timezone.now() - timedelta(days=2))
    customer_merge(customer_ids=[older.id, newer.id], reason="t", actor="test")
    customer_merge(customer_ids=[third.id, older.id], reason="t", actor="test")
    assert set(Customer.objects.filter(merged_into__isnull=False).values_list("merged_into_id", flat=True)) == {
        third.id
    }


def test_merges_in_one_call_apply_in_order_and_stay_one_hop(two_people: Any) -> None:
    older, newer = two_people
    third = CustomerFactory.create()
    IdentityFactory.create(customer=third, kind="email", value="ann@example.com")
    Customer.objects.filter(id=third.id).update(created_at=timezone.now() - timedelta(days=2))
    outcomes = customers_merge(
        requests=[
            MergeRequest(customer_ids=[older.id, newer.id], reason="first"),
            MergeRequest(customer_ids=[newer.id, third.id], reason="second"),
        ],
        actor="test",
    )
    assert [(o.survivor_id, o.merged_ids) for o in outcomes] == [(older.id, [newer.id]), (third.id, [older.id])]
    assert set(Customer.objects.filter(merged_into__isnull=False).values_list("merged_into_id", flat=True)) == {
        third.id
    }
    assert set(Identity.objects.values_list("customer_id", flat=True)) == {third.id}
    assert set(Event.objects.values_list("customer_id", flat=True)) == {third.id}
    assert Customer.objects.get(id=third.id).traits == {"plan": "pro"}
    assert sorted(MergeRecord.objects.values_list("reason", "survivor_id")) == [
        ("first", older.id),
        ("second", third.id),
    ]


def test_a_refused_merge_in_one_call_leaves_the_others_applied(post: Any, two_people: Any) -> None:
    older, newer = two_people
    bob = CustomerFactory.create()
    IdentityFactory.create(customer=bob, kind="user_id", value="bob")
    outcomes = customers_merge(
        requests=[
            MergeRequest(customer_ids=[newer.id, bob.id], reason="shared device"),
            MergeRequest(customer_ids=[older.id, newer.id], reason="same person"),
        ],
        actor="test",
    )
    assert outcomes[0].survivor_id is None
    assert "user_id" in outcomes[0].refused
    assert (outcomes[1].survivor_id, outcomes[1].merged_ids) == (older.id, [newer.id])
    assert MergeRefusal.objects.get().reason == outcomes[0].refused
    assert Customer.objects.get(id=bob.id).merged_into_id is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_merges_lose_nothing_and_make_no_cycle() -> None:
    """Rounds of three profiles A, B, C: one thread merges A+B while another merges B+C."""
    rounds = []
    for n in range(15):
        trio = [
            CustomerFactory.create(traits={f"k{n}{i}": i}, trait_times={f"k{n}{i}": "2026-01-01"}) for i in range(3)
        ]
        for i, customer in enumerate(trio):
            IdentityFactory.create(kind="anonymous_id", value=f"r{n}-{i}", customer=customer)
        rounds.append(trio)
    barrier = threading.Barrier(2)

    def merge_pairs(pick: Any) -> None:
        barrier.wait()
        try:
            for trio in rounds:
                customer_merge(customer_ids=pick(trio), reason="race", actor="test")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=merge_pairs, args=(lambda t: [t[0].id, t[1].id],)),
        threading.Thread(target=merge_pairs, args=(lambda t: [t[1].id, t[2].id],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    for n, trio in enumerate(rounds):
        ids = [c.id for c in trio]
        live = list(Customer.objects.filter(id__in=ids, merged_into__isnull=True))
        assert len(live) == 1
        assert set(
            Customer.objects.filter(id__in=ids).exclude(id=live[0].id).values_list("merged_into_id", flat=True)
        ) == {live[0].id}
        assert set(Identity.objects.filter(value__startswith=f"r{n}-").values_list("customer_id", flat=True)) == {
            live[0].id
        }
        assert live[0].traits == {f"k{n}{i}": i for i in range(3)}


def test_apps_hear_of_a_merge_inside_its_transaction(two_people: Any, monkeypatch: Any) -> None:
    from profiles import contracts

    heard: list[tuple[Any, bool]] = []
    monkeypatch.setattr(
        contracts, "_merged_listeners", [lambda merges: heard.append((merges, connection.in_atomic_block))]
    )
    older, newer = two_people
    customer_merge(customer_ids=[older.id, newer.id], reason="same", actor="test")
    assert heard == [({older.id: [newer.id]}, True)]
