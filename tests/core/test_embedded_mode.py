"""`make run` with no configuration: an embedded PostgreSQL in the data directory, in-process
tasks, and it ingests and routes through the same code as production."""

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from config import embedded
from tests.conftest import ROOT, answers, free_port, wait_until


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=True
    )
    return done.stdout


@pytest.fixture
def laptop(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a laptop with nothing configured, its embedded database migrated; the
    embedded server is stopped afterwards whatever the test did to `serve`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "PGHOST", "PGPORT")
    }
    env |= {"EMBEDDED_DATA_DIR": str(tmp_path / "postgres"), "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    try:
        _run(env, "migrate", "--noinput")
        yield env
    finally:
        embedded.stop(tmp_path / "postgres")


def _query(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    """Rows of the embedded database, through the socket directory its server announced (the
    fifth line of postmaster.pid, as PostgreSQL documents it)."""
    pgdata = Path(env["EMBEDDED_DATA_DIR"])
    socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]
    with psycopg.connect(host=socket_dir, user="postgres", dbname=embedded.DATABASE_NAME) as conn:
        return conn.execute(sql).fetchall()


def test_embedded_mode_starts_ingests_and_routes_in_process(laptop: dict[str, str]) -> None:
    env = laptop
    write_key = _run(env, "create_source", "laptop", "--channel", "web").strip().splitlines()[-1]
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    status, body = 0, ""
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=90, message="serve starts")
        response = requests.post(
            f"http://127.0.0.1:{port}/v1/track",
            json={"anonymousId": "laptop-user", "event": "Tried It"},
            auth=(write_key, ""),
            timeout=30,
        )
        status, body = response.status_code, response.text
        # The event, and the Session Started it led to (sessions are derived from events), both routed.
        wait_until(
            lambda: _query(env, "SELECT count(*) FROM orchestration_routelog") == [(2,)],
            timeout=30,
            message="both events routed",
        )
        names = _query(env, "SELECT name FROM profiles_event ORDER BY id")
        outbox = _query(env, "SELECT count(*) FROM profiles_eventoutbox")
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            output, _ = serve.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Never leave a server behind: a stuck one would hold its port and files after the run.
            os.killpg(serve.pid, signal.SIGKILL)
            output, _ = serve.communicate()
            raise AssertionError(f"serve did not stop within 60 s of SIGINT\n{output}") from None
    assert status == 200, f"{status} {body}\n--- serve output ---\n{output}"
    assert "Mode: embedded (embedded PostgreSQL in var/postgres, tasks run in-process" in output, output
    assert names == [("Tried It",), ("Session Started",)]
    assert outbox == [(0,)]
    # serve stopped the embedded server once its children had gone.
    assert not (Path(env["EMBEDDED_DATA_DIR"]) / "postmaster.pid").exists()


def test_the_embedded_database_keeps_its_data_across_restarts(laptop: dict[str, str]) -> None:
    _run(laptop, "create_source", "kept", "--channel", "web")
    embedded.stop(Path(laptop["EMBEDDED_DATA_DIR"]))
    assert not (Path(laptop["EMBEDDED_DATA_DIR"]) / "postmaster.pid").exists()
    _run(laptop, "migrate", "--noinput")  # starts it again, as `make run` does
    assert _query(laptop, "SELECT name FROM profiles_source WHERE name = 'kept'") == [("kept",)]


def test_what_serve_started_stops_when_serve_is_killed(laptop: dict[str, str], tmp_path: Path) -> None:
    env = laptop
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: set[int] = set()
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=90, message="serve starts")
        children = _descendants(serve.pid)
        assert len(children) >= 3, children  # granian's master and worker, the scheduler
        os.kill(serve.pid, signal.SIGKILL)  # no chance to stop anything itself
        serve.wait(timeout=10)
        wait_until(lambda: not any(_running(pid) for pid in children), timeout=30, message="the children stop")
    finally:
        for pid in children | {serve.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not answers(f"http://127.0.0.1:{port}/healthz")


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # pid (comm) state ppid ...: comm may hold spaces, so split after its last ')'.
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
