"""The chaos suite's system: everything on throwaway services the tests may break.

One PostgreSQL cluster per module (tests/throwaway.py), migrated once into a template database
that also holds the traffic's source; each test gets a fresh database cloned from it, its own
state Redis and broker Redis (separate servers, so the broker can be taken away alone), each
reached through a TcpLink so it can be partitioned without losing its data, the web server as
production serves it, and real Celery workers. None of it touches the shared PostgreSQL or Redis,
and no test here uses pytest-django's test database.
"""

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import pytest
import redis
import requests
from celery import Celery

from tests.conftest import ROOT, WorkerProcess, web_server
from tests.throwaway import TcpLink, ThrowawayPostgres, ThrowawayRedis, throwaway_postgres, throwaway_redis, wait_until

TEMPLATE = "tl_chaos_template"
# Bounds, generous for a 2-core machine shared with other runs: the system must settle inside them.
SETTLE_SECONDS = 90
SWEEP_EVERY_SECONDS = 2.0
REQUEST_TIMEOUT = 15


def _manage(*args: str, database_url: str, redis_url: str) -> str:
    """`manage.py <args>` against the throwaway cluster (never the shared services); its stdout."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Cluster:
    postgres: ThrowawayPostgres
    write_key: str
    names: Iterator[int] = field(default_factory=itertools.count)

    def fresh_database(self) -> str:
        """A database cloned from the migrated template (a copy of files, well under a second)."""
        return self.postgres.create_database(f"tl_chaos_{next(self.names)}", template=TEMPLATE)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL, migrated once, with one web source created by the project's own
    `create_source` command (its write key is the command's last line)."""
    with throwaway_postgres() as postgres, throwaway_redis() as scratch:
        url = postgres.create_database(TEMPLATE)
        _manage("migrate", "--noinput", database_url=url, redis_url=scratch.url)
        out = _manage("create_source", "chaos-web", "--channel", "web", database_url=url, redis_url=scratch.url)
        yield Cluster(postgres=postgres, write_key=out.strip().splitlines()[-1])


@dataclass
class Answer:
    method: str
    path: str
    status: int  # 0: no answer at all (connection refused or reset, timeout)
    content_type: str
    retry_after: str | None
    body: str

    @property
    def acceptable(self) -> bool:
        """2xx; 412 to a conditional PATCH; 304; else only a JSON 503 that says when to retry.
        An HTML 500, any other error, or no answer at all fails the suite."""
        if 200 <= self.status < 300 or self.status == 304 or (self.method == "PATCH" and self.status == 412):
            return True
        return self.status == 503 and "json" in self.content_type and bool(self.retry_after)

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path} -> {self.status} {self.content_type!r} "
            f"Retry-After={self.retry_after} {self.body[:160]!r}"
        )


class System:
    """The web server, workers and links of one test, and the checks of what it promised."""

    def __init__(self, cluster: Cluster, database_url: str, state: ThrowawayRedis, broker: ThrowawayRedis) -> None:
        self.cluster = cluster
        self.database_url = database_url
        self.state = state
        self.broker = broker
        self.state_link = TcpLink(state.port)
        self.broker_link = TcpLink(broker.port)
        self.env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.state_link.port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.broker_link.port}/0",
        }
        self.workers: list[WorkerProcess] = []
        self.killed: list[WorkerProcess] = []
        self.base = ""
        self.http = requests.Session()
        self.http.auth = (cluster.write_key, "")
        # The test's own publisher of sweeps, straight to the broker (not through the link it
        # cuts); never the current app, which the rest of the suite's tasks use.
        self.control = Celery("chaos-control", set_as_current=False)

    # --- processes --------------------------------------------------------------------------

    def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.database_url, env=self.env).start()
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: WorkerProcess) -> None:
        """SIGKILL, parent and children, and wait until PostgreSQL has ended its sessions."""
        worker.kill()
        self.workers.remove(worker)
        self.killed.append(worker)

    def dead_workers(self) -> list[int]:
        """The pids of the workers that should be running and are not."""
        return [w.process.pid for w in self.workers if w.process is not None and w.process.poll() is not None]

    # --- HTTP, every answer recorded ----------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[Answer, Any]:
        data = None if body is None else orjson.dumps(body)
        headers.setdefault("Content-Type", "application/json")
        try:
            response = self.http.request(
                method, f"{self.base}{path}", data=data, headers=headers, timeout=REQUEST_TIMEOUT
            )
        except requests.RequestException as error:
            return Answer(method, path, 0, "", None, repr(error)), None
        answer = Answer(
            method,
            path,
            response.status_code,
            response.headers.get("Content-Type", ""),
            response.headers.get("Retry-After"),
            response.text,
        )
        parsed = None
        if "json" in answer.content_type and response.content:
            with contextlib.suppress(ValueError):
                parsed = response.json()
        return answer, parsed

    # --- settling and the database's side of the invariants -----------------------------------

    def sweep(self, *, countdown: int = 0) -> None:
        """What beat does every ROUTING_SWEEP_INTERVAL_SECONDS, for every stale row; with a
        countdown the worker holds the task, unacknowledged, until it is due (as it holds a
        routing task's retry during its backoff)."""
        # Celery's broker_url prefers the CELERY_BROKER_URL of the environment (the test run's own
        # broker) to the app's, so the connection names the throwaway broker itself.
        with self.control.connection_for_write(self.broker.url) as conn:
            self.control.send_task(
                "orchestration.sweep_outbox",
                kwargs={"older_than_seconds": 0},
                queue="maintenance",
                countdown=countdown,
                connection=conn,
            )

    def worker_holds_unacked(self) -> bool:
        """Whether a worker holds a task it has not acknowledged (kombu's Redis transport keeps
        those in the broker's `unacked` hash)."""
        return bool(redis.Redis.from_url(self.broker.url).hlen("unacked"))

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def outbox_size(self) -> int:
        return int(self.query("SELECT count(*) FROM profiles_eventoutbox")[0][0])

    def settle(self) -> None:
        """Wait until the outbox is empty, sweeping every SWEEP_EVERY_SECONDS as beat would."""
        last = 0.0

        def drained() -> bool:
            nonlocal last
            if time.monotonic() - last > SWEEP_EVERY_SECONDS:
                self.sweep()
                last = time.monotonic()
            return self.outbox_size() == 0

        wait_until(drained, timeout=SETTLE_SECONDS, interval=0.2, message="the outbox drains")

    def routed(self) -> int:
        """RouteLog rows so far."""
        return int(self.query("SELECT count(*) FROM orchestration_routelog")[0][0])

    def stored_message_ids(self) -> dict[str, int]:
        """messageId -> how many events carry it."""
        rows = self.query("SELECT message_id, count(*) FROM profiles_event GROUP BY message_id")
        return {message_id: int(n) for message_id, n in rows}

    def routes_per_event(self) -> dict[int, int]:
        """Every event id -> how many RouteLog rows it has (0 for one never routed)."""
        rows = self.query(
            "SELECT e.id, count(r.id) FROM profiles_event e "
            "LEFT JOIN orchestration_routelog r ON r.event_id = e.id GROUP BY e.id"
        )
        return {event_id: int(n) for event_id, n in rows}

    def stray_routes(self) -> int:
        """RouteLog rows naming no stored event."""
        rows = self.query(
            "SELECT count(*) FROM orchestration_routelog r "
            "WHERE NOT EXISTS (SELECT 1 FROM profiles_event e WHERE e.id = r.event_id)"
        )
        return int(rows[0][0])

    def close(self) -> None:
        # SIGKILL, not a warm shutdown that waits for tasks: the database is thrown away anyway.
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.kill()
        self.state_link.close()
        self.broker_link.close()
        self.http.close()
        self.control.close()


@pytest.fixture
def system(cluster: Cluster) -> Iterator[System]:
    """A fresh database, state and broker Redis, one worker and the web server (threads=4)."""
    with throwaway_redis() as state, throwaway_redis() as broker:
        chaos = System(cluster, cluster.fresh_database(), state, broker)
        try:
            chaos.start_worker()
            with web_server(threads=4, **chaos.env) as (base, _):
                chaos.base = base
                yield chaos
        finally:
            chaos.close()


class Traffic:
    """Two load threads against the web server: Segment batches of good track messages, and
    conditional PATCHes of a few sessions, each between two GETs. Records every answer, every
    messageId answered 2xx, every session version a PATCH was answered 2xx with, and every GET
    whose version is older than one acknowledged before it was sent."""

    BATCH = 10
    SESSIONS = 2
    PAUSE = 0.01

    def __init__(self, system: System, name: str) -> None:
        self.system = system
        self.name = name
        self.answers: list[Answer] = []
        self.acknowledged: set[str] = set()
        self.acked_version: dict[str, int] = {}
        self.stale_reads: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._ingest, name="chaos-ingest", daemon=True),
            threading.Thread(target=self._sessions, name="chaos-sessions", daemon=True),
        ]
        self._batches = 0
        self._rounds = 0

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def __enter__(self) -> "Traffic":
        for i in range(self.SESSIONS):
            answer, doc = self.system.call("POST", "/v1/sessions", {"userId": f"{self.name}-u{i}", "state": {"n": 0}})
            assert answer.status == 201, f"starting the traffic's sessions: {answer}"
            self.acked_version[doc["id"]] = doc["version"]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT * 3)
            assert not thread.is_alive(), f"{thread.name} did not stop"

    def send_batch(self, tag: str) -> tuple[Answer, list[str]]:
        ids = [f"{self.name}-{tag}-{i}" for i in range(self.BATCH)]
        batch = [
            {"type": "track", "anonymousId": f"{self.name}-a{i % 7}", "event": "Chaos Tick", "messageId": m}
            for i, m in enumerate(ids)
        ]
        answer, _ = self.system.call("POST", "/v1/batch", {"batch": batch})
        self._record(answer)
        if 200 <= answer.status < 300:
            with self._lock:
                self.acknowledged.update(ids)
        return answer, ids

    def _ingest(self) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            self.send_batch(f"b{n}")
            self._batches = n + 1
            time.sleep(self.PAUSE)

    def progress(self) -> tuple[int, int]:
        """(batches sent, session rounds done): answered or not, each counts."""
        return self._batches, self._rounds

    def _sessions(self) -> None:
        known = dict(self.acked_version)
        for n in itertools.count():
            if self._stop.is_set():
                return
            session_id = list(known)[n % len(known)]
            # Read before writing too: the first request for a session after a fault is a read,
            # as it is for a channel that comes back to it.
            self.read(session_id)
            answer, doc = self.system.call(
                "PATCH",
                f"/v1/sessions/{session_id}",
                {"n": n},
                **{"Content-Type": "application/merge-patch+json", "If-Match": f'"{known[session_id]}"'},
            )
            self._record(answer)
            if answer.status == 200:
                known[session_id] = doc["version"]
                with self._lock:
                    self.acked_version[session_id] = max(self.acked_version[session_id], doc["version"])
            elif answer.status == 412 and doc:
                known[session_id] = doc["currentVersion"]
            self.read(session_id)
            self._rounds = n + 1
            time.sleep(self.PAUSE)

    def read(self, session_id: str) -> None:
        """GET the session; a version older than one acknowledged before the GET is a stale read."""
        with self._lock:
            floor = self.acked_version[session_id]
        answer, doc = self.system.call("GET", f"/v1/sessions/{session_id}")
        self._record(answer)
        if answer.status == 200 and doc["version"] < floor:
            with self._lock:
                self.stale_reads.append(f"{session_id}: read version {doc['version']} after {floor} was acknowledged")

    def answer_counts(self) -> dict[str, int]:
        """'METHOD status' -> how many answers (status 0: none at all)."""
        with self._lock:
            return dict(Counter(f"{a.method} {a.status}" for a in self.answers))

    def bad_answers(self) -> list[str]:
        return [str(a) for a in self.answers if not a.acceptable]
