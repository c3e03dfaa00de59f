"""Recording decisions: each process's Decision rows on their way to the database.

A decision is a row the history explains (GET /api/v1/decisions/{id}). Writing it in the request
cost most of decide's PostgreSQL time (an INSERT and a commit, with its WAL flush, per request)
and a tenth of its web CPU. With DECIDE_RECORD_LINGER_MS > 0 the request instead hands the row to
this process's recorder, whose thread writes what has gathered in one COPY when the oldest row
has waited that long (or DECIDE_RECORD_MAX_BATCH rows wait). The trade-off, bounded by the
setting: for up to the linger a decision id may not resolve yet (journeys.decide.decision_get
waits for a decision that young instead of answering 404), and a process killed without a clean
exit (SIGKILL, OOM, power) loses the rows it held, not the answers it gave. A clean exit (the web
server's graceful stop, interpreter exit) writes them (config.core.server.at_worker_exit). 0
writes in the request.

Whichever way, a row that cannot be written because the database is down stays in memory (at
most _PENDING_LIMIT rows) and is written with the next batch that reaches the database.
"""

import logging
import os
import threading
import time
from datetime import datetime
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection

from config.core.server import at_worker_exit
from journeys.models import Decision

logger = logging.getLogger(__name__)

_PENDING_LIMIT = 10_000

_COLUMNS = ("id", "placement", "customer_id", "version_id", "at", "degraded", "result", "explanation")
_ROW_SQL = "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"
# After a failed write, the recorder waits this long before trying again (each attempt against
# an unreachable database blocks for the connection timeout).
_RETRY_SECONDS = 1.0
# The recorder's thread closes its database connection after this long without a decision.
IDLE_CLOSE_SECONDS = 1.0

DecisionRow = tuple[UUID, str, UUID | None, UUID | None, datetime, bool, str, str]


def _insert_rows(rows: list[DecisionRow]) -> None:
    """The rows in one statement (autocommit): COPY, whose per-row cost is a fraction of a
    multi-row INSERT's parameter handling. A COPY that meets a row already written (a retry after
    a failure that came after the commit) fails whole; the rows then go in with an INSERT that
    skips the ones present. Table and columns are the model's own; every value is data."""
    table = Decision._meta.db_table
    column = {field.attname: field.column for field in Decision._meta.concrete_fields}
    columns = ", ".join(connection.ops.quote_name(column[name]) for name in _COLUMNS)
    try:
        with (
            connection.cursor() as cursor,
            connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    except IntegrityError:
        values = ", ".join([_ROW_SQL] * len(rows))
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT (id, at) DO NOTHING"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, [item for row in rows for item in row])


class DecisionRecorder:
    """This process's decisions on their way to the database."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: list[DecisionRow] = []
        self._oldest = 0.0
        self._writing = False  # the thread is writing rows it took
        self._connected = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def __len__(self) -> int:
        return len(self._pending)

    def holds(self, decision_id: UUID) -> bool:
        with self._lock:
            return any(row[0] == decision_id for row in self._pending)

    def submit(self, row: DecisionRow) -> None:
        if settings.DECIDE_RECORD_LINGER_MS <= 0:
            self._write_now(row)
            return
        with self._lock:
            self._ensure_thread()
            if not self._pending:
                self._oldest = time.monotonic()
                self._lock.notify_all()
            self._pending.append(row)
            if len(self._pending) >= settings.DECIDE_RECORD_MAX_BATCH:
                self._lock.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every row held now, after the thread's write in progress if any: when it
        returns True every decision answered before the call is in the database. False when the
        database refused them (they are kept)."""
        with self._lock:
            self._lock.wait_for(lambda: not self._writing, timeout)
            rows, self._pending = self._pending, []
        return self._write(rows)

    def _write_now(self, row: DecisionRow) -> None:
        with self._lock:
            rows, self._pending = [*self._pending, row], []
        self._write(rows)

    def _write(self, rows: list[DecisionRow]) -> bool:
        if not rows:
            return True
        size = settings.DECIDE_RECORD_MAX_BATCH
        try:
            while rows:
                _insert_rows(rows[:size])
                del rows[:size]
        except DatabaseError:
            with self._lock:
                self._pending[:0] = rows
                del self._pending[:-_PENDING_LIMIT]
            logger.warning("%d decisions kept in memory: the database is unreachable", len(rows))
            return False
        return True

    def _ensure_thread(self) -> None:
        # After a fork (web or Celery workers) the parent's thread does not exist in the child.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            if self._pid != os.getpid():
                self._pending = []  # the parent's rows: the parent writes them
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="decide-recorder", daemon=True)
            self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether the thread holds a database connection (it closes it when idle)."""
        return self._connected

    def _run(self) -> None:
        while True:
            linger = settings.DECIDE_RECORD_LINGER_MS / 1000
            with self._lock:
                while not self._pending:
                    if not self._lock.wait(IDLE_CLOSE_SECONDS) and self._connected:
                        # No decisions for a while: give the connection back.
                        connection.close()
                        self._connected = False
                wait = self._oldest + linger - time.monotonic()
                if wait > 0 and len(self._pending) < settings.DECIDE_RECORD_MAX_BATCH:
                    self._lock.wait(wait)
                rows, self._pending = self._pending, []
                self._writing = True
                self._connected = True
            written = self._write(rows)
            with self._lock:
                self._writing = False
                self._lock.notify_all()
            if not written:
                # The connection this thread holds is broken: a fresh one next time.
                connection.close()
                time.sleep(_RETRY_SECONDS)


recorder = DecisionRecorder()
# A clean stop writes what is held: interpreter exit, or a granian worker's graceful stop.
at_worker_exit(recorder.flush)


def decisions_pending() -> int:
    """How many answered decisions wait in this process for the database."""
    return len(recorder)


def new_decision_id() -> UUID:
    """A UUIDv7 (RFC 9562): the first 48 bits are the Unix time in ms, so a decision's id says
    when it was made (decision_get waits for a young one that is not written yet) and new rows
    land at the right edge of the primary key's index."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC 4122 variant
    return UUID(int=value)


def made_at(decision_id: UUID) -> float | None:
    """When a decision id was made (Unix seconds), if it is one of new_decision_id's."""
    return (decision_id.int >> 80) / 1000 if decision_id.version == 7 else None
