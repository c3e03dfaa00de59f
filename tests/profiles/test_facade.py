"""profiles.facade: the one answer to "who is this customer" and the one way to address an
internal event to a customer, as the other apps call them."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from profiles import facade
from profiles.contracts import CustomerCluster, CustomerProfile, InternalEvent, SentAs
from profiles.merging import customer_merge
from profiles.models import Customer, Event, Identity
from tests.factories import CustomerFactory, IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def merged(ingest: Any) -> tuple[Customer, Customer, Customer]:
    """Three people; the second is merged into the first (the older)."""
    ingest.post("track", {"anonymousId": "phone-anon", "event": "Opened App"})
    ingest.post("identify", {"userId": "ann"})
    ingest.post("identify", {"userId": "bob"})
    survivor = Identity.objects.get(value="phone-anon").customer
    loser = Identity.objects.get(value="ann").customer
    other = Identity.objects.get(value="bob").customer
    Customer.objects.filter(id=survivor.id).update(created_at=timezone.now() - timedelta(days=1))
    customer_merge(customer_ids=[survivor.id, loser.id], reason="same person", actor="test")
    return survivor, loser, other


def test_a_live_id_gives_its_cluster_and_a_merged_away_id_its_survivors(merged: Any) -> None:
    survivor, loser, other = merged

    clusters = facade.customer_clusters(customer_ids=[survivor.id, loser.id, other.id])

    assert clusters == {
        survivor.id: CustomerCluster(id=survivor.id, member_ids=(survivor.id, loser.id)),
        loser.id: CustomerCluster(id=survivor.id, member_ids=(survivor.id, loser.id)),
        other.id: CustomerCluster(id=other.id, member_ids=(other.id,)),
    }


def test_an_unknown_or_malformed_id_gives_nothing(merged: Any) -> None:
    survivor, _, _ = merged

    clusters = facade.customer_clusters(customer_ids=[uuid.uuid4(), "not-a-uuid", str(survivor.id)])

    assert list(clusters) == [survivor.id]


def test_clusters_take_two_queries_whatever_the_number_of_ids(django_assert_num_queries: Any) -> None:
    ids = [CustomerFactory.create().id for _ in range(30)]

    with django_assert_num_queries(2):
        facade.customer_clusters(customer_ids=ids)


def test_a_profile_is_read_as_frozen_data_with_its_cluster(merged: Any) -> None:
    survivor, loser, _ = merged

    profile = facade.customer_profile(customer_id=loser.id)

    assert isinstance(profile, CustomerProfile)
    assert (profile.id, profile.member_ids) == (survivor.id, (survivor.id, loser.id))


def test_an_identity_left_on_a_merged_away_profile_finds_the_survivor_in_one_query(
    merged: Any, django_assert_num_queries: Any
) -> None:
    survivor, loser, _ = merged
    # As an identity written to the loser while the merge ran (merging moves them to the survivor).
    Identity.objects.filter(value="ann").update(customer=loser)

    with django_assert_num_queries(1):
        found = facade.customer_find(kind="user_id", value=" ann ")

    assert found == CustomerProfile(
        id=survivor.id, member_ids=(survivor.id, loser.id), traits=Customer.objects.get(id=survivor.id).traits
    )


def test_an_event_is_addressed_by_the_newest_user_id_of_the_person(merged: Any) -> None:
    survivor, loser, _ = merged

    result = facade.event_emit(
        source_name="throughline-test",
        events=[InternalEvent(customer_id=loser.id, type="track", event="Nudged", message_id="m-1", timestamp=_now())],
    )

    assert (result.accepted, result.unaddressed) == (1, ())
    stored = Event.objects.get(message_id="m-1")
    assert (stored.customer_id, stored.user_id) == (survivor.id, "ann")


def test_an_event_is_addressed_as_the_customers_routed_event_was(merged: Any) -> None:
    survivor, _, _ = merged
    event = InternalEvent(
        customer_id=survivor.id,
        type="track",
        event="Nudged",
        message_id="m-2",
        timestamp=_now(),
        sent_as=SentAs(user_id="", anonymous_id="phone-anon"),
    )

    facade.event_emit(source_name="throughline-test", events=[event])

    stored = Event.objects.get(message_id="m-2")
    assert (stored.customer_id, stored.user_id, stored.anonymous_id) == (survivor.id, "", "phone-anon")


def test_a_person_known_only_by_email_is_reached_without_a_new_profile() -> None:
    person = IdentityFactory.create(kind="email", value="cy@example.com").customer

    result = facade.event_emit(
        source_name="throughline-test",
        events=[
            InternalEvent(customer_id=person.id, type="identify", message_id="m-3", timestamp=_now(), traits={"a": 1})
        ],
    )

    assert result.accepted == 1
    assert Event.objects.get(message_id="m-3").customer_id == person.id
    assert Customer.objects.count() == 1


def test_an_unknown_customer_or_one_with_no_address_is_not_sent_to() -> None:
    unknown = uuid.uuid4()
    bare = CustomerFactory.create()
    events = [
        InternalEvent(customer_id=unknown, type="track", event="Nudged", message_id="m-4", timestamp=_now()),
        InternalEvent(customer_id=bare.id, type="track", event="Nudged", message_id="m-5", timestamp=_now()),
    ]

    result = facade.event_emit(source_name="throughline-test", events=events)

    assert (result.accepted, set(result.unaddressed)) == (0, {unknown, bare.id})
    assert not Event.objects.exists()


def test_an_event_emitted_twice_is_stored_once(merged: Any) -> None:
    survivor, _, _ = merged
    event = InternalEvent(customer_id=survivor.id, type="track", event="Nudged", message_id="m-6", timestamp=_now())

    facade.event_emit(source_name="throughline-test", events=[event])
    facade.event_emit(source_name="throughline-test", events=[event])

    assert Event.objects.filter(message_id="m-6").count() == 1


def _now() -> Any:
    return timezone.now()


def test_a_customers_reach_is_the_live_profile_with_the_identities_of_the_person(merged: Any) -> None:
    survivor, loser, other = merged

    reach = facade.customer_reach(customer_ids=[loser.id, other.id, uuid.uuid4()])

    assert (reach[loser.id].profile.id, reach[loser.id].identities) == (
        survivor.id,
        (("anonymous_id", "phone-anon"), ("user_id", "ann")),
    )
    assert (reach[other.id].profile.id, reach[other.id].identities) == (other.id, (("user_id", "bob"),))
    assert len(reach) == 2


def test_reach_takes_four_queries_whatever_the_number_of_ids(django_assert_num_queries: Any) -> None:
    ids = [IdentityFactory.create(kind="email", value=f"p{n}@example.com").customer_id for n in range(30)]

    with django_assert_num_queries(4):
        reach = facade.customer_reach(customer_ids=ids)

    assert sorted(len(found.identities) for found in reach.values()) == [1] * 30
