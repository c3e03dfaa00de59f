"""Identity resolution at ingestion: real-time merges, their refusals, trait operations."""

import threading
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from orchestration.models import RouteLog
from profiles.ingest import event_ingest
from profiles.models import Customer, Event, EventOutbox, Identity, MergeRecord, MergeRefusal, QuarantinedMessage
from profiles.selectors import source_for_write_key
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db


def _live() -> list[Customer]:
    return list(Customer.objects.filter(merged_into__isnull=True))


def test_identify_tying_two_profiles_merges_them_at_once(ingest: Any, api: Any) -> None:
    ingest.post("track", {"anonymousId": "desktop", "event": "Form Started"})
    ingest.post("track", {"userId": "ann", "event": "App Opened"})
    ingest.post("identify", {"anonymousId": "desktop", "userId": "ann", "messageId": "tie"})
    assert len(_live()) == 1
    assert api("/api/v1/customers", anonymous_id="desktop").json()["id"] == str(_live()[0].id)
    record = MergeRecord.objects.get()
    assert (record.actor, record.trigger["message_id"]) == ("ingestion", "tie")


def test_a_batch_tying_several_pairs_merges_each(ingest: Any) -> None:
    for person in ("ann", "bob", "cat"):
        ingest.post("track", {"anonymousId": f"{person}-phone", "event": "App Opened"})
        ingest.post("identify", {"userId": person, "traits": {"name": person}})
    ingest.post(
        "batch",
        {
            "batch": [
                {"type": "identify", "anonymousId": f"{person}-phone", "userId": person, "messageId": f"tie-{person}"}
                for person in ("ann", "bob", "cat")
            ]
        },
    )
    assert sorted(c.traits["name"] for c in _live()) == ["ann", "bob", "cat"]
    for person in ("ann", "bob", "cat"):
        owners = Identity.objects.filter(value__in=[person, f"{person}-phone"]).values_list("customer_id", flat=True)
        assert len(set(owners)) == 1
    assert sorted(MergeRecord.objects.values_list("trigger__message_id", flat=True)) == [
        "tie-ann",
        "tie-bob",
        "tie-cat",
    ]


def test_shared_device_never_merges_two_known_users(ingest: Any) -> None:
    ingest.post("identify", {"userId": "ann", "context": {"device": {"id": "family-ipad"}}})
    ingest.post("identify", {"userId": "bob", "context": {"device": {"id": "family-ipad"}}, "messageId": "bob-1"})
    assert len(_live()) == 2
    assert "user_id" in MergeRefusal.objects.get().reason
    bob = Identity.objects.get(kind="user_id", value="bob").customer
    assert bob.events.filter(message_id="bob-1").exists()


def test_set_once_keeps_the_first_value_and_unset_removes(ingest: Any) -> None:
    ingest.post("identify", {"userId": "u", "traits": {"$set_once": {"first_channel": "web"}, "trial": True}})
    ingest.post("identify", {"userId": "u", "traits": {"$set_once": {"first_channel": "sms"}, "$unset": ["trial"]}})
    assert Customer.objects.get().traits == {"first_channel": "web"}


def test_set_once_inside_one_batch_keeps_the_first(ingest: Any) -> None:
    ingest.post(
        "batch",
        {
            "batch": [
                {"type": "identify", "userId": "u", "traits": {"$set_once": {"first": 1}}},
                {"type": "identify", "userId": "u", "traits": {"$set_once": {"first": 2}, "plan": "pro"}},
            ]
        },
    )
    assert Customer.objects.get().traits == {"first": 1, "plan": "pro"}


def test_merged_traits_keep_the_newest_value_per_key(ingest: Any) -> None:
    ingest.post("identify", {"anonymousId": "a", "traits": {"city": "Oslo"}, "timestamp": "2026-11-01T00:00:00Z"})
    ingest.post("identify", {"userId": "u", "traits": {"city": "Bergen"}, "timestamp": "2026-10-01T00:00:00Z"})
    ingest.post("identify", {"anonymousId": "a", "userId": "u", "timestamp": "2026-11-02T00:00:00Z"})
    assert _live()[0].traits["city"] == "Oslo"


def test_placeholder_anonymous_id_is_refused_and_quarantined(ingest: Any) -> None:
    response = ingest.post("track", {"anonymousId": "undefined", "event": "X"})
    assert response.status_code == 400
    assert response.json()["code"] == "junk_identity"
    assert QuarantinedMessage.objects.get().reason == "junk_identity"


def test_placeholder_beside_a_real_id_is_ignored(ingest: Any) -> None:
    ingest.post("track", {"userId": "u1", "anonymousId": "null", "event": "X"})
    ingest.post("track", {"userId": "u2", "anonymousId": "null", "event": "X"})
    assert len(_live()) == 2
    assert not Identity.objects.filter(value="null").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingestion_merging_overlapping_profiles(source: Any) -> None:
    info = source_for_write_key(source.write_key)
    assert info is not None
    now = timezone.now()
    trios = 12
    seed = [
        {"type": "identify", "anonymousId": f"{n}-{who}", "traits": {f"{who}{n}": True}}
        for n in range(trios)
        for who in "abc"
    ]
    seed += [
        {"type": "identify", "anonymousId": f"{n}-b", "traits": {"email": f"b{n}@example.com"}} for n in range(trios)
    ]
    event_ingest(source=info, raw_messages=seed, call_type=None, received_at=now)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def tie(who: str) -> None:
        barrier.wait()
        try:
            for n in range(trios):
                message = {
                    "anonymousId": f"{n}-{who}",
                    "event": "Tie",
                    "context": {"traits": {"email": f"b{n}@example.com"}},
                }
                event_ingest(source=info, raw_messages=[message], call_type="track", received_at=timezone.now())
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=tie, args=(who,)) for who in "ac"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for n in range(trios):
        owners = set(Identity.objects.filter(value__startswith=f"{n}-").values_list("customer_id", flat=True))
        assert len(owners) == 1
        live = Customer.objects.get(id=owners.pop())
        assert live.merged_into_id is None
        assert {f"a{n}", f"b{n}", f"c{n}"} <= set(live.traits)


def _ingest_while_another_holds_the_user_id(source: Any, message: dict[str, Any]) -> tuple[uuid.UUID, Any]:
    """Another transaction creates a customer with user id "race" and holds it uncommitted; the
    message is ingested meanwhile and, once it waits on that identity, the other commits. The
    winner's id, and what ingestion answered."""
    info = source_for_write_key(source.write_key)
    assert info is not None
    settings_dict = connection.settings_dict
    other = psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
    )
    winner = uuid.uuid4()
    done: list[Any] = []
    # Closed whatever happens: left open, its uncommitted rows would hold the test database's
    # teardown (TRUNCATE) forever instead of letting the test fail.
    try:
        other.execute(
            "INSERT INTO profiles_customer (id, traits, trait_times, once_keys, computed_state, created_at, "
            "updated_at) VALUES (%s, '{}', '{}', '[]', '{}', now(), now())",
            [winner],
        )
        other.execute(
            "INSERT INTO profiles_identity (kind, value, customer_id, created_at, updated_at) "
            "VALUES ('user_id', 'race', %s, now(), now())",
            [winner],
        )

        def ingest() -> None:
            try:
                done.append(
                    event_ingest(source=info, raw_messages=[message], call_type="track", received_at=timezone.now())
                )
            finally:
                connection.close()

        thread = threading.Thread(target=ingest)
        thread.start()
        with psycopg.connect(
            host=other.info.host, port=other.info.port, user=other.info.user, dbname=other.info.dbname
        ) as watch:

            def ingestion_waits() -> bool:
                query = (
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                row = watch.execute(query).fetchone()
                return bool(row and row[0])

            wait_until(ingestion_waits, timeout=30, message="ingestion never waited on the uncommitted identity")
        other.commit()
    finally:
        other.close()
    thread.join(timeout=30)
    assert done, "ingestion did not finish"
    return winner, done[0]


@pytest.mark.django_db(transaction=True)
def test_an_identity_another_transaction_claims_first_resolves_to_its_customer(source: Any) -> None:
    """The other transaction inserts the identity first and commits while ingestion waits on it:
    ingestion's own new customer and identities are undone and the message joins the winner."""
    message = {"userId": "race", "anonymousId": "race-device", "event": "Raced"}
    winner, result = _ingest_while_another_holds_the_user_id(source, message)
    assert result.accepted == 1
    assert list(Customer.objects.values_list("id", flat=True)) == [winner]
    assert set(Identity.objects.values_list("kind", "value", "customer_id")) == {
        ("user_id", "race", winner),
        ("anonymous_id", "race-device", winner),
    }


# Calls whose every message names one identity and sets no traits are stored by one statement
# in its own transaction: only outside a caller's transaction, hence transactional tests.


@pytest.mark.django_db(transaction=True)
def test_one_identity_calls_find_or_start_one_profile(ingest: Any) -> None:
    first = ingest.post("track", {"anonymousId": "tablet", "event": "Opened", "messageId": "m-1"})
    again = ingest.post("page", {"anonymousId": "tablet", "name": "Home", "messageId": "m-2"})
    batch = ingest.post(
        "batch",
        {
            "batch": [
                {"type": "track", "anonymousId": "tablet", "event": "Clicked", "messageId": "m-3"},
                {"type": "screen", "userId": "zoe", "name": "Cart", "messageId": "m-4"},
                {"type": "track", "userId": "zoe", "event": "Paid", "messageId": "m-5"},
            ]
        },
    )
    assert [r.json()["accepted"] for r in (first, again, batch)] == [1, 1, 3]
    tablet = Identity.objects.get(kind="anonymous_id", value="tablet").customer_id
    zoe = Identity.objects.get(kind="user_id", value="zoe").customer_id
    assert tablet != zoe
    assert Customer.objects.count() == 2
    assert list(Event.objects.order_by("id").values_list("message_id", "customer_id")) == [
        ("m-1", tablet),
        ("m-2", tablet),
        ("m-3", tablet),
        ("m-4", zoe),
        ("m-5", zoe),
    ]
    assert EventOutbox.objects.count() + RouteLog.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_one_identity_call_lands_on_the_survivor_and_is_stored_once(ingest: Any) -> None:
    ingest.post("track", {"anonymousId": "laptop", "event": "Opened"})
    ingest.post("track", {"userId": "yan", "event": "Opened"})
    ingest.post("identify", {"anonymousId": "laptop", "userId": "yan"})
    survivor = Customer.objects.get(merged_into__isnull=True)
    first = ingest.post("track", {"anonymousId": "laptop", "event": "Again", "messageId": "again"})
    retried = ingest.post("track", {"anonymousId": "laptop", "event": "Again", "messageId": "again"})
    assert (first.json()["accepted"], retried.json()["duplicates"]) == (1, 1)
    assert Event.objects.get(message_id="again").customer_id == survivor.id


@pytest.mark.django_db(transaction=True)
def test_a_new_identity_another_transaction_claims_first_leaves_nothing_behind(source: Any) -> None:
    """The one statement fails whole on the identity the other transaction committed first, and
    the call, taken again the general way, joins the winner: no stray profile."""
    winner, result = _ingest_while_another_holds_the_user_id(source, {"userId": "race", "event": "Raced"})
    assert result.accepted == 1
    assert list(Customer.objects.values_list("id", flat=True)) == [winner]
    assert list(Event.objects.values_list("customer_id", flat=True)) == [winner]


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_on_new_identities_leaves_nothing_behind(source: Any) -> None:
    """The other transaction holds one of the call's new identities, then claims the other one the
    call is holding: PostgreSQL aborts the call's statement, which is then taken the general way
    and joins the winner."""
    info = source_for_write_key(source.write_key)
    assert info is not None
    settings_dict = connection.settings_dict
    params = {
        "host": settings_dict["HOST"] or "127.0.0.1",
        "port": settings_dict["PORT"] or 5432,
        "user": settings_dict["USER"],
        "dbname": settings_dict["NAME"],
    }
    other = psycopg.connect(**params)
    winner = uuid.uuid4()
    insert_identity = (
        "INSERT INTO profiles_identity (kind, value, customer_id, created_at, updated_at) "
        "VALUES ('anonymous_id', %s, %s, now(), now())"
    )
    done: list[Any] = []
    try:
        # PostgreSQL looks for a deadlock once, deadlock_timeout after a statement starts to wait,
        # in the waiting session. The cycle must be found by the call's session, after this
        # test has closed it: so the call waits 5 s before looking (time enough on a busy
        # machine to close the cycle) and this session, which waits last, never looks first.
        other.execute("SET deadlock_timeout = '60s'")
        other.execute(
            "INSERT INTO profiles_customer (id, traits, trait_times, once_keys, computed_state, created_at, "
            "updated_at) VALUES (%s, '{}', '{}', '[]', '{}', now(), now())",
            [winner],
        )
        other.execute(insert_identity, ["dl-b", winner])

        def ingest() -> None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SET deadlock_timeout = '5s'")
                messages = [
                    {"type": "track", "anonymousId": "dl-a", "event": "One", "messageId": "dl-1"},
                    {"type": "track", "anonymousId": "dl-b", "event": "Two", "messageId": "dl-2"},
                ]
                done.append(
                    event_ingest(source=info, raw_messages=messages, call_type=None, received_at=timezone.now())
                )
            finally:
                connection.close()

        thread = threading.Thread(target=ingest)
        thread.start()
        with psycopg.connect(**params) as watch:

            def ingestion_waits() -> bool:
                query = (
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                row = watch.execute(query).fetchone()
                return bool(row and row[0])

            # Well within the call's deadlock_timeout, so the cycle is there when it looks.
            wait_until(
                ingestion_waits,
                timeout=30,
                interval=0.005,
                message="ingestion never waited on the uncommitted identity",
            )
        # Ingestion holds dl-a and waits for dl-b; claiming dl-a closes the cycle.
        other.execute(insert_identity, ["dl-a", winner])
        other.commit()
        thread.join(timeout=30)
    finally:
        other.close()
    assert done and done[0].accepted == 2
    assert list(Customer.objects.values_list("id", flat=True)) == [winner]
    assert set(Event.objects.values_list("customer_id", flat=True)) == {winner}
