"""Two transactions in a chosen order: one held open in a thread while the test starts another
that must wait for it. Real transactions on real connections, nothing patched: the order is made
certain by holding the first open until the second is seen waiting on a lock in
pg_stat_activity, instead of hoping a race falls the bad way often enough."""

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from django.db import connection, transaction

from tests.throwaway import wait_until

TIMEOUT = 30


def _watch() -> psycopg.Connection[Any]:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=True,
    )


def _lock_waits(watch: psycopg.Connection[Any]) -> int:
    row = watch.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


class Thread:
    """`work` in a thread of its own, on a database connection of its own."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: list[Any] = []
        self.error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.result.append(work())
        except BaseException as error:  # handed to the test by join()
            self.error.append(error)
        finally:
            connection.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> Any:
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the thread did not finish"
        if self.error:
            raise self.error[0]
        return self.result[0]


@contextlib.contextmanager
def held_open(work: Callable[[], Any]) -> Iterator[Thread]:
    """Run `work` in a transaction in a thread, and keep that transaction open (its locks held,
    its writes uncommitted) until the block ends; then commit it."""
    done = threading.Event()
    release = threading.Event()
    worked: list[bool] = []

    def run() -> Any:
        try:
            with transaction.atomic():
                result = work()
                worked.append(True)
                done.set()
                assert release.wait(TIMEOUT), "the held transaction was never released"
            return result
        finally:
            done.set()

    thread = Thread(run)
    assert done.wait(TIMEOUT), "the held transaction's work did not finish"
    if not worked:
        thread.join()  # the work failed: raise its error here
    try:
        yield thread
    finally:
        release.set()


def started_and_waiting(work: Callable[[], Any], *, waits_before: int = 0) -> Thread:
    """Start `work` in a thread and return once it waits on a lock (more backends waiting on a
    lock than `waits_before`) or has finished without needing to."""
    with _watch() as watch:
        thread = Thread(work)
        wait_until(
            lambda: _lock_waits(watch) > waits_before or not thread.alive,
            timeout=TIMEOUT,
            message="the second transaction waits on the first's lock",
        )
    return thread
