"""`make run` with no configuration: SQLite, in-process tasks, and it ingests."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def _embedded(database: Path) -> dict[str, str]:
    """The environment of a laptop with nothing configured, its SQLite database migrated."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env |= {"SQLITE_PATH": str(database), "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    _run(env, "migrate", "--noinput")
    return env


def test_embedded_mode_starts_ingests_and_routes_in_process(tmp_path: Path) -> None:
    database = tmp_path / "embedded.sqlite3"
    env = _embedded(database)
    write_key = _run(env, "create_source", "laptop", "--channel", "web").strip().splitlines()[-1]
    port = _free_port()
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
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=90, message="serve starts")
        response = requests.post(
            f"http://127.0.0.1:{port}/v1/track",
            json={"anonymousId": "laptop-user", "event": "Tried It"},
            auth=(write_key, ""),
            timeout=30,
        )
        status, body = response.status_code, response.text
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
    assert "Mode: embedded (SQLite database, tasks run in-process" in output, output
    with sqlite3.connect(database) as db:
        # The event, and the Session Started it led to (sessions are derived from events).
        assert db.execute("SELECT name FROM profiles_event ORDER BY id").fetchall() == [
            ("Tried It",),
            ("Session Started",),
        ]
        assert db.execute("SELECT count(*) FROM orchestration_routelog").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM profiles_eventoutbox").fetchone() == (0,)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_what_serve_started_stops_when_serve_is_killed(tmp_path: Path) -> None:
    env = _embedded(tmp_path / "embedded.sqlite3")
    port = _free_port()
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
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=90, message="serve starts")
        children = _descendants(serve.pid)
        assert len(children) >= 3, children  # granian's master and worker, the scheduler
        os.kill(serve.pid, signal.SIGKILL)  # no chance to stop anything itself
        serve.wait(timeout=10)
        wait_until(lambda: not any(_running(pid) for pid in children), timeout=30, message="the children stop")
    finally:
        for pid in children | {serve.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not _answers(f"http://127.0.0.1:{port}/healthz")


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
