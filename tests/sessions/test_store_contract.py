"""One contract, two stores: the Redis store (written through to PostgreSQL) and the database
store of embedded mode. Every test here runs against both, on real Redis and PostgreSQL."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factory
import pytest

from profiles.models import Customer
from sessions.concurrency import ANY, VersionMismatch
from sessions.documents import SessionDoc
from sessions.store import DatabaseStore, RedisStore, SessionNotFound

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.now(UTC).replace(microsecond=0)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer


@pytest.fixture(params=[RedisStore, DatabaseStore], ids=["redis", "database"])
def store(request: Any) -> Iterator[DatabaseStore]:
    yield request.param()


def new_doc(customer_id: str, *, channel: str = "web", state: dict[str, Any] | None = None) -> SessionDoc:
    return SessionDoc(
        id=str(uuid.uuid4()),
        customer_id=customer_id,
        channel=channel,
        started_channel=channel,
        device="laptop",
        version=1,
        state=state if state is not None else {"form": {"step": 1}},
        started_at=NOW,
        last_seen_at=NOW,
        channels=(channel,),
        source_ids=("source-a",),
        user_id="u-1",
    )


def new_customer() -> str:
    customer: Any = CustomerFactory()
    return str(customer.id)


@pytest.fixture
def customer_id() -> str:
    return new_customer()


def set_state(state: dict[str, Any]) -> Any:
    return lambda doc: doc.evolve(state=state)


def test_a_created_session_reads_back_as_written(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id, state={"cart": {"sku": "A1", "qty": 2}, "big": 2**62}))
    assert store.get(created.id) == created


def test_an_unknown_session_reads_as_none(store: DatabaseStore) -> None:
    assert store.get(str(uuid.uuid4())) is None


def test_every_write_bumps_the_version(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    updated = store.update(created.id, set_state({"form": {"step": 2}}), expected=1)
    assert (updated.version, store.get(created.id).version) == (2, 2)  # type: ignore[union-attr]


def test_a_write_against_a_stale_version_is_refused_with_the_current_one(
    store: DatabaseStore, customer_id: str
) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, set_state({"form": {"step": 2}}), expected=1)
    with pytest.raises(VersionMismatch) as raised:
        store.update(created.id, set_state({"form": {"step": 9}}), expected=1)
    assert raised.value.current == 2


def test_a_refused_write_changes_nothing(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    with pytest.raises(VersionMismatch):
        store.update(created.id, set_state({"lost": True}), expected=7)
    assert store.get(created.id) == created


def test_any_version_writes_whatever_the_version(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, set_state({"a": 1}), expected=1)
    updated = store.update(created.id, set_state({"b": 2}), expected=ANY)
    assert (updated.version, updated.state) == (3, {"b": 2})


def test_a_mutation_returning_none_writes_nothing(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    assert store.update(created.id, lambda doc: None, expected=ANY).version == created.version


def test_updating_an_unknown_session_raises_not_found(store: DatabaseStore) -> None:
    with pytest.raises(SessionNotFound):
        store.update(str(uuid.uuid4()), set_state({}), expected=ANY)


def test_the_guard_refuses_before_the_version_is_revealed(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))

    def refuse(doc: SessionDoc) -> None:
        raise PermissionError

    with pytest.raises(PermissionError):
        store.update(created.id, set_state({}), expected=99, guard=refuse)


def test_active_sessions_of_a_customer_are_listed_newest_first(store: DatabaseStore, customer_id: str) -> None:
    older = store.create(new_doc(customer_id, channel="web"))
    newer = store.create(new_doc(customer_id, channel="mobile").evolve(last_seen_at=NOW + timedelta(minutes=1)))
    store.create(new_doc(new_customer()))
    assert [d.id for d in store.list_active([customer_id])] == [newer.id, older.id]


def test_an_ended_session_leaves_the_active_list(store: DatabaseStore, customer_id: str) -> None:
    kept = store.create(new_doc(customer_id, channel="web"))
    ended = store.create(new_doc(customer_id, channel="mobile"))
    store.list_active([customer_id])
    store.update(ended.id, lambda doc: doc.evolve(ended_at=NOW, end_reason="ended"), expected=ANY)
    assert [d.id for d in store.list_active([customer_id])] == [kept.id]


def test_a_session_started_after_the_list_was_read_is_listed(store: DatabaseStore, customer_id: str) -> None:
    first = store.create(new_doc(customer_id, channel="web"))
    store.list_active([customer_id])
    second = store.create(new_doc(customer_id, channel="mobile").evolve(last_seen_at=NOW + timedelta(minutes=1)))
    assert [d.id for d in store.list_active([customer_id])] == [second.id, first.id]


def test_touching_moves_last_seen_without_a_new_version(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    later = NOW + timedelta(minutes=5)
    store.touch_many({created.id: later})
    read = store.get(created.id)
    assert (read.last_seen_at, read.version) == (later, 1)  # type: ignore[union-attr]


def test_touching_never_moves_last_seen_back(store: DatabaseStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    store.touch_many({created.id: NOW - timedelta(minutes=5)})
    assert store.get(created.id).last_seen_at == NOW  # type: ignore[union-attr]


def test_writes_survive_losing_redis(store: DatabaseStore, customer_id: str, test_redis: Any) -> None:
    """FLUSHDB of the test run's own Redis database (never FLUSHALL of the shared server)."""
    created = store.create(new_doc(customer_id))
    updated = store.update(created.id, set_state({"kept": True}), expected=1)
    test_redis.flushdb()
    assert store.get(created.id) == updated


def test_the_active_list_survives_losing_redis(store: DatabaseStore, customer_id: str, test_redis: Any) -> None:
    """FLUSHDB of the test run's own Redis database (never FLUSHALL of the shared server)."""
    created = store.create(new_doc(customer_id))
    store.list_active([customer_id])
    test_redis.flushdb()
    assert [d.id for d in store.list_active([customer_id])] == [created.id]


def _make_redis_copy_stale(test_redis: Any, doc: SessionDoc) -> None:
    """Put an older version back in the Redis copy, as a lost copy update would leave it."""
    test_redis.hset(f"tl:sess:{doc.id}", mapping={"v": doc.version, "d": doc.dumps()})


def test_a_stale_copy_does_not_refuse_the_current_version(
    store: DatabaseStore, customer_id: str, test_redis: Any
) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, set_state({"a": 1}), expected=1)
    _make_redis_copy_stale(test_redis, created)
    assert store.update(created.id, set_state({"b": 2}), expected=2).version == 3


def test_a_stale_copy_does_not_lose_a_write_made_since(store: DatabaseStore, customer_id: str, test_redis: Any) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, lambda doc: doc.evolve(state={**doc.state, "a": 1}), expected=1)
    _make_redis_copy_stale(test_redis, created)
    updated = store.update(created.id, lambda doc: doc.evolve(state={**doc.state, "b": 2}), expected=ANY)
    assert (updated.version, updated.state) == (3, {"form": {"step": 1}, "a": 1, "b": 2})
