"""One contract, two stores: the Redis store (written through to PostgreSQL) and the database
store (no Redis). Every test here runs against both, on real Redis and PostgreSQL: first the
SessionStore protocol itself, then what channels do through /v1/sessions (start, read, patch
with If-Match, hand off, resume, end, expire) with the process's store set to each."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from sessions.concurrency import ANY, VersionMismatch
from sessions.documents import SessionDoc
from sessions.services import sessions_end_inactive
from sessions.store import DatabaseStore, RedisStore, SessionNotFound, SessionStore, session_store
from tests.conftest import SessionsClient
from tests.factories import CustomerFactory, SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.now(UTC).replace(microsecond=0)

IMPLEMENTATIONS = {"redis": RedisStore, "database": DatabaseStore}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def store(request: Any, settings: Any) -> SessionStore:
    """The process's store, set to each implementation in turn (SESSIONS_STORE)."""
    settings.SESSIONS_STORE = request.param
    chosen = session_store()
    assert isinstance(chosen, IMPLEMENTATIONS[request.param])
    return chosen


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


# --- the protocol ---------------------------------------------------------------------------


def test_a_created_session_reads_back_as_written(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id, state={"cart": {"sku": "A1", "qty": 2}, "big": 2**62}))
    assert store.get(created.id) == created


def test_an_unknown_session_reads_as_none(store: SessionStore) -> None:
    assert store.get(str(uuid.uuid4())) is None


def test_every_write_bumps_the_version(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    updated = store.update(created.id, set_state({"form": {"step": 2}}), expected=1)
    assert (updated.version, store.get(created.id).version) == (2, 2)  # type: ignore[union-attr]


def test_a_write_against_a_stale_version_is_refused_with_the_current_one(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, set_state({"form": {"step": 2}}), expected=1)
    with pytest.raises(VersionMismatch) as raised:
        store.update(created.id, set_state({"form": {"step": 9}}), expected=1)
    assert raised.value.current == 2


def test_a_refused_write_changes_nothing(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    with pytest.raises(VersionMismatch):
        store.update(created.id, set_state({"lost": True}), expected=7)
    assert store.get(created.id) == created


def test_any_version_writes_whatever_the_version(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, set_state({"a": 1}), expected=1)
    updated = store.update(created.id, set_state({"b": 2}), expected=ANY)
    assert (updated.version, updated.state) == (3, {"b": 2})


def test_a_mutation_returning_none_writes_nothing(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    assert store.update(created.id, lambda doc: None, expected=ANY).version == created.version


def test_updating_an_unknown_session_raises_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        store.update(str(uuid.uuid4()), set_state({}), expected=ANY)


def test_the_guard_refuses_before_the_version_is_revealed(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))

    def refuse(doc: SessionDoc) -> None:
        raise PermissionError

    with pytest.raises(PermissionError):
        store.update(created.id, set_state({}), expected=99, guard=refuse)


def test_active_sessions_of_a_customer_are_listed_newest_first(store: SessionStore, customer_id: str) -> None:
    older = store.create(new_doc(customer_id, channel="web"))
    newer = store.create(new_doc(customer_id, channel="mobile").evolve(last_seen_at=NOW + timedelta(minutes=1)))
    store.create(new_doc(new_customer()))
    assert [d.id for d in store.list_active([customer_id])] == [newer.id, older.id]


def test_an_ended_session_leaves_the_active_list(store: SessionStore, customer_id: str) -> None:
    kept = store.create(new_doc(customer_id, channel="web"))
    ended = store.create(new_doc(customer_id, channel="mobile"))
    store.list_active([customer_id])
    store.update(ended.id, lambda doc: doc.evolve(ended_at=NOW, end_reason="ended"), expected=ANY)
    assert [d.id for d in store.list_active([customer_id])] == [kept.id]


def test_a_session_started_after_the_list_was_read_is_listed(store: SessionStore, customer_id: str) -> None:
    first = store.create(new_doc(customer_id, channel="web"))
    store.list_active([customer_id])
    second = store.create(new_doc(customer_id, channel="mobile").evolve(last_seen_at=NOW + timedelta(minutes=1)))
    assert [d.id for d in store.list_active([customer_id])] == [second.id, first.id]


def test_touching_moves_last_seen_without_a_new_version(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    later = NOW + timedelta(minutes=5)
    store.touch_many({created.id: later})
    read = store.get(created.id)
    assert (read.last_seen_at, read.version) == (later, 1)  # type: ignore[union-attr]


def test_touching_never_moves_last_seen_back(store: SessionStore, customer_id: str) -> None:
    created = store.create(new_doc(customer_id))
    store.touch_many({created.id: NOW - timedelta(minutes=5)})
    assert store.get(created.id).last_seen_at == NOW  # type: ignore[union-attr]


def test_writes_survive_losing_redis(store: SessionStore, customer_id: str, test_redis: Any) -> None:
    """FLUSHDB of the test run's own Redis database (never FLUSHALL of the shared server)."""
    created = store.create(new_doc(customer_id))
    updated = store.update(created.id, set_state({"kept": True}), expected=1)
    test_redis.flushdb()
    assert store.get(created.id) == updated


def test_the_active_list_survives_losing_redis(store: SessionStore, customer_id: str, test_redis: Any) -> None:
    """FLUSHDB of the test run's own Redis database (never FLUSHALL of the shared server)."""
    created = store.create(new_doc(customer_id))
    store.list_active([customer_id])
    test_redis.flushdb()
    assert [d.id for d in store.list_active([customer_id])] == [created.id]


def _make_redis_copy_stale(test_redis: Any, doc: SessionDoc) -> None:
    """Put an older version back in the Redis copy, as a lost copy update would leave it."""
    test_redis.hset(f"tl:sess:{doc.id}", mapping={"v": doc.version, "d": doc.dumps()})


def test_a_stale_copy_does_not_refuse_the_current_version(
    store: SessionStore, customer_id: str, test_redis: Any
) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, set_state({"a": 1}), expected=1)
    _make_redis_copy_stale(test_redis, created)
    assert store.update(created.id, set_state({"b": 2}), expected=2).version == 3


def test_a_stale_copy_does_not_lose_a_write_made_since(store: SessionStore, customer_id: str, test_redis: Any) -> None:
    created = store.create(new_doc(customer_id))
    store.update(created.id, lambda doc: doc.evolve(state={**doc.state, "a": 1}), expected=1)
    _make_redis_copy_stale(test_redis, created)
    updated = store.update(created.id, lambda doc: doc.evolve(state={**doc.state, "b": 2}), expected=ANY)
    assert (updated.version, updated.state) == (3, {"form": {"step": 1}, "a": 1, "b": 2})


# --- through /v1/sessions, as channels call it ---------------------------------------------


@pytest.fixture
def web(store: SessionStore, source: Any, sessions_for: Any) -> SessionsClient:
    return sessions_for(source)


@pytest.fixture
def kiosk(store: SessionStore, sessions_for: Any) -> SessionsClient:
    return sessions_for(SourceFactory(channel="pos"))


@pytest.fixture
def started(web: SessionsClient) -> dict[str, Any]:
    response = web.start({"userId": "u-1", "device": "laptop", "state": {"form": {"step": 1}}})
    assert response.status_code == 201, response.content
    return dict(response.json())


@pytest.fixture
def token(web: SessionsClient, started: dict[str, Any]) -> str:
    response = web.handoff(started["id"])
    assert response.status_code == 201, response.content
    return str(response.json()["token"])


def test_a_started_session_reads_back_with_its_state_and_version(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.get(started["id"])
    assert (response.status_code, response["ETag"], response.json()["state"]) == (200, '"1"', {"form": {"step": 1}})


def test_a_patch_on_the_current_version_is_read_back_merged_with_the_next_version(
    web: SessionsClient, started: dict[str, Any]
) -> None:
    web.patch(started["id"], {"form": {"email": "a@b.c"}}, version=1)
    response = web.get(started["id"])
    assert (response["ETag"], response.json()["state"]) == ('"2"', {"form": {"step": 1, "email": "a@b.c"}})


def test_a_patch_on_a_stale_version_is_412_with_the_current_one(web: SessionsClient, started: dict[str, Any]) -> None:
    web.patch(started["id"], {"form": {"step": 2}}, version=1)
    response = web.patch(started["id"], {"form": {"step": 9}}, version=1)
    assert (response.status_code, response.json()["currentVersion"]) == (412, 2)


def test_a_patch_without_if_match_is_428(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.patch(started["id"], {"form": {"step": 2}}, version=None)
    assert (response.status_code, response.json()["code"]) == (428, "if_match_required")


def test_a_handed_off_session_is_read_on_the_resuming_channel_with_its_state(
    kiosk: SessionsClient, started: dict[str, Any], token: str
) -> None:
    kiosk.resume({"token": token, "device": "kiosk-7"})
    body = kiosk.get(started["id"]).json()
    assert (body["channel"], body["device"], body["version"], body["state"]) == (
        "pos",
        "kiosk-7",
        2,
        {"form": {"step": 1}},
    )


def test_a_resume_token_is_single_use(kiosk: SessionsClient, token: str) -> None:
    kiosk.resume({"token": token})
    response = kiosk.resume({"token": token})
    assert (response.status_code, response.json()["code"]) == (410, "token_used")


def test_an_ended_session_reads_as_ended_with_its_outcome(web: SessionsClient, started: dict[str, Any]) -> None:
    web.end(started["id"], {"outcome": "completed"})
    body = web.get(started["id"]).json()
    assert (body["active"], body["endReason"], body["outcome"]) == (False, "ended", "completed")


def test_an_ended_session_refuses_patches(web: SessionsClient, started: dict[str, Any]) -> None:
    web.end(started["id"])
    response = web.patch(started["id"], {"form": {"step": 2}}, version="*")
    assert (response.status_code, response.json()["code"]) == (409, "session_ended")


def test_a_session_idle_past_its_channels_timeout_reads_as_expired(
    web: SessionsClient, started: dict[str, Any]
) -> None:
    sessions_end_inactive(now=timezone.now() + timedelta(minutes=31))
    body = web.get(started["id"]).json()
    assert (body["active"], body["endReason"]) == (False, "inactive")


def test_an_expired_session_reopens_when_resumed(kiosk: SessionsClient, started: dict[str, Any], token: str) -> None:
    sessions_end_inactive(now=timezone.now() + timedelta(minutes=31))
    kiosk.resume({"token": token})
    body = kiosk.get(started["id"]).json()
    assert (body["active"], body["channel"], body["state"]) == (True, "pos", {"form": {"step": 1}})
