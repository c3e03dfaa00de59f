"""Every acknowledged write survives losing Redis: the test Redis is emptied and every session
reads back unchanged, put back in Redis from PostgreSQL on the miss."""

from typing import Any

import pytest

from tests.conftest import SessionsClient

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS = 1000


def test_a_thousand_sessions_survive_a_redis_flush(source: Any, sessions_for: Any, test_redis: Any) -> None:
    """Writes 1,000 sessions (started, then patched) through the API, empties Redis with
    FLUSHDB on this test run's own database number (REDIS_URL) — never FLUSHALL, which would
    wipe the other databases of the shared server — and reads all 1,000 back unchanged."""
    web: SessionsClient = sessions_for(source)
    written = {}
    for i in range(SESSIONS):
        started = web.start({"userId": f"u-{i}", "state": {"form": {"step": 1}, "n": i, "big": 2**60 + i}}).json()
        patched = web.patch(started["id"], {"form": {"step": 2}, "tags": [i, "x"]}, version=1)
        written[started["id"]] = patched.json()
    assert test_redis.dbsize() > 0
    test_redis.flushdb()
    assert test_redis.dbsize() == 0
    read = {session_id: web.get(session_id).json() for session_id in written}
    assert read == written


def test_after_a_flush_a_read_puts_the_session_back_in_redis(source: Any, sessions_for: Any, test_redis: Any) -> None:
    """FLUSHDB of this test run's own Redis database (never FLUSHALL of the shared server)."""
    web: SessionsClient = sessions_for(source)
    session = web.start({"userId": "u-1", "state": {"a": 1}}).json()
    test_redis.flushdb()
    web.get(session["id"])
    assert test_redis.exists(f"tl:sess:{session['id']}") == 1


def test_a_write_after_a_flush_continues_from_the_durable_version(
    source: Any, sessions_for: Any, test_redis: Any
) -> None:
    """FLUSHDB of this test run's own Redis database (never FLUSHALL of the shared server)."""
    web: SessionsClient = sessions_for(source)
    session = web.start({"userId": "u-1", "state": {"a": 1}}).json()
    web.patch(session["id"], {"b": 2}, version=1)
    test_redis.flushdb()
    response = web.patch(session["id"], {"c": 3}, version=2)
    assert (response.status_code, response.json()["state"]) == (200, {"a": 1, "b": 2, "c": 3})
