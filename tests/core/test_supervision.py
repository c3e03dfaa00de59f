"""Workers and `manage.py serve` stay up: a worker outlives broker restarts and outages, and
`serve` restarts a child that dies. Each test has a broker of its own (a throwaway redis-server
it kills), never the shared one."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from django.db import connection

from config.celery import app
from config.core.management.commands.serve import Child, Command
from tests.conftest import ROOT, WorkerProcess, _database_url, answers
from tests.throwaway import TcpLink, ThrowawayRedis, free_port, throwaway_redis, wait_until

pytestmark = pytest.mark.worker

# Tasks with a countdown stay reserved in the worker, unacknowledged, until they are due: with
# acks_late every reserved task is held so, as a busy routing worker holds its prefetched ones.
HELD = 3


@pytest.fixture
def broker() -> Iterator[ThrowawayRedis]:
    with throwaway_redis() as server:
        yield server


def _publish(broker_url: str, *, queue: str = "routing") -> str:
    """HELD tasks due in an hour, then one due now; the id of the one due now. Celery's own
    `celery.accumulate` task: every worker has it and it needs nothing."""
    with app.connection_for_write(url=broker_url) as conn:
        for _ in range(HELD):
            app.send_task("celery.accumulate", args=(1,), queue=queue, countdown=3600, connection=conn)
        return str(app.send_task("celery.accumulate", args=(1,), queue=queue, connection=conn).id)


def _done(broker_url: str, task_id: str, *, queue: str = "routing") -> Callable[[], bool]:
    """Whether the worker took the task off the queue, ran it and acknowledged it (acks_late:
    its message leaves the broker's `unacked` hash once it ran)."""
    client = redis.Redis.from_url(broker_url)

    def done() -> bool:
        if client.llen(queue):
            return False
        return not any(task_id.encode() in message for message in client.hvals("unacked"))

    return done


def test_a_worker_holding_unacknowledged_tasks_survives_repeated_broker_restarts(
    worker_factory: Callable[..., WorkerProcess], broker: ThrowawayRedis
) -> None:
    worker = worker_factory(concurrency=1, queues="routing", env={"CELERY_BROKER_URL": broker.url})
    wait_until(_done(broker.url, _publish(broker.url)), timeout=60, message="the worker consumes")
    assert worker.process is not None

    for drop in range(8):
        broker.kill()
        time.sleep(1)
        broker.start()  # empty, on the same port: a Redis restart without persistence
        wait_until(_done(broker.url, _publish(broker.url)), timeout=40, message=f"consumes after restart {drop + 1}")
        assert worker.process.poll() is None, f"the worker exited after restart {drop + 1}"


def test_a_worker_holding_unacknowledged_tasks_survives_partitions_from_a_running_broker(
    worker_factory: Callable[..., WorkerProcess], broker: ThrowawayRedis
) -> None:
    link = TcpLink(broker.port)  # the worker's way to the broker, which keeps running
    try:
        worker = worker_factory(
            concurrency=1, queues="routing", env={"CELERY_BROKER_URL": f"redis://127.0.0.1:{link.port}/0"}
        )
        wait_until(_done(broker.url, _publish(broker.url)), timeout=60, message="the worker consumes")
        assert worker.process is not None

        for cut in range(6):
            link.cut()
            time.sleep(1)
            link.heal()
            wait_until(_done(broker.url, _publish(broker.url)), timeout=40, message=f"consumes after cut {cut + 1}")
            assert worker.process.poll() is None, f"the worker exited after cut {cut + 1}"
    finally:
        link.close()


def test_a_worker_outlives_a_broker_outage_of_35_seconds(
    worker_factory: Callable[..., WorkerProcess], broker: ThrowawayRedis
) -> None:
    worker = worker_factory(concurrency=1, queues="routing", env={"CELERY_BROKER_URL": broker.url})
    wait_until(_done(broker.url, _publish(broker.url)), timeout=60, message="the worker consumes")

    broker.kill()
    time.sleep(35)
    broker.start()

    # Reconnection attempts back off to at most 30 s apart.
    wait_until(_done(broker.url, _publish(broker.url)), timeout=45, message="the worker consumes again")
    assert worker.process is not None and worker.process.poll() is None


def test_workers_retry_the_broker_forever_from_start_up() -> None:
    # Celery's default gives up after 100 attempts (about 45 minutes of an outage) and the worker exits.
    assert app.conf.broker_connection_max_retries is None
    assert app.conf.broker_connection_retry_on_startup is True


def _children(serve: subprocess.Popen[str]) -> dict[str, psutil.Process]:
    """serve's direct children by role (web, worker, scheduler)."""
    roles: dict[str, psutil.Process] = {}
    for child in psutil.Process(serve.pid).children():
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        role = "worker" if " worker " in command else "scheduler" if " beat " in command else "web"
        roles[role] = child
    return roles


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_serve_restarts_a_worker_that_dies_and_sigterm_stops_every_child(
    transactional_db: Any, broker: ThrowawayRedis, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "metrics").mkdir()  # every process records its metrics there, serve included
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict["NAME"]),
        "CELERY_BROKER_URL": broker.url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: answers(f"{base}/healthz") and len(_children(serve)) == 3, timeout=90, message="serve starts"
        )
        killed = _children(serve)["worker"]
        killed.kill()  # SIGKILL, as an OOM kill would

        def restarted() -> bool:
            worker = _children(serve).get("worker")
            return worker is not None and worker.pid != killed.pid

        wait_until(restarted, timeout=30, message="serve starts a new worker")
        wait_until(
            _done(broker.url, _publish(broker.url, queue="default"), queue="default"), timeout=60, message="it consumes"
        )
        assert answers(f"{base}/healthz")
        everything = [psutil.Process(serve.pid), *psutil.Process(serve.pid).children(recursive=True)]

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        assert [process.pid for process in everything if _alive(process)] == []
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
    output = log.read_text()
    assert "worker exited with -9" in output, output


def test_serve_waits_longer_each_time_a_child_keeps_dying() -> None:
    err = StringIO()
    command = Command(stdout=StringIO(), stderr=err)
    crasher = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    crasher.start(dict(os.environ), lambda: None)

    def four_deaths() -> bool:
        command.supervise(crasher, dict(os.environ), lambda: None)
        return err.getvalue().count("crasher exited with 3") == 4

    wait_until(four_deaths, timeout=20, interval=0.1, message="four deaths")
    crasher.wait_or_kill(timeout=5)
    assert re.findall(r"restarting it in (\d+) s", err.getvalue()) == ["1", "2", "4", "8"]
