"""The decide path: one customer, one placement, an answer now.

`decision_make` evaluates the published decide journeys of a placement (trigger
`{"type": "decide", "placement": ...}`) synchronously: it walks their branch, random split and
route steps with conditions compiled once per published version, over only the parts of the
customer the compiled conditions need (traits, computed traits, segments, consent, the live
session, history), renders the answer's content with Liquid (as message content is), and records
a Decision row that says why.

Speed: a request costs one Redis round trip (the source's rate limit, as ingestion counts it),
one identity lookup (prepared once per connection, the segment keys in the same statement), one
query per other root the conditions need (consent; computed traits come from the profile row),
and a share of a bulk COPY of Decision rows. Compiled journeys are cached
per process and reloaded when routing's publish generation (journeys.routing.publish_generation,
the same one the routing handler checks per chunk) has moved; decide reads it at most once per
GENERATION_CHECK_SECONDS, so a publish or archive reaches every process within that.

Degraded answers: when Redis cannot be reached (the rate limit cannot be counted, the live
session state cannot be read), when the database cannot be read (the profile is unknown) or when
the session provider fails, the answer is the journey's `default_decision`, 200, marked
`degraded` with the reason. The broker is never on this path, so a broker outage alone does not
change answers: they stay whole.

The Decision row is written behind the answer by the process's recorder, in bulk, within
DECIDE_RECORD_LINGER_MS (0: in the request, before the answer); see "Recording decisions" below
for what that trades and how an answered id still resolves.
"""

import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from config.core import metrics
from config.core.server import at_worker_exit
from journeys import contracts as journey_contracts
from journeys.conditions import Condition, ConditionError, EvalContext, EventHistory, compile_condition
from journeys.models import Decision, JourneyVersion, Segment, SegmentMembership, VersionStatus
from journeys.routing import publish_generation
from journeys.selectors import customer_consent
from profiles import models as profile_models
from profiles.computed_traits import computed_traits_of
from profiles.identifiers import normalize
from profiles.models import Customer
from profiles.selectors import customer_find

logger = logging.getLogger(__name__)

_PENDING_LIMIT = 10_000


# --- The journeys generation ---------------------------------------------------------------------


# Routing's publish generation (one aggregate query over the published versions), read at most
# once per GENERATION_CHECK_SECONDS per process: a publish or archive reaches decide within that.
GENERATION_CHECK_SECONDS = 1.0
_generation: tuple[float, Any] = (0.0, None)


def _current_generation() -> Any:
    """The publish generation (DatabaseError when the database is down)."""
    global _generation  # noqa: PLW0603 - the per-process copy
    checked_at, value = _generation
    now = time.monotonic()
    if value is None or now - checked_at >= GENERATION_CHECK_SECONDS:
        value = publish_generation()
        _generation = (now, value)
    return value


# --- Compiled decide journeys, per process --------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecideJourney:
    """A published decide journey, its branch conditions compiled."""

    journey_id: UUID
    journey_key: str
    version_id: UUID
    version_number: int
    placement: str
    start: str
    steps: Mapping[str, Mapping[str, Any]]
    conditions: Mapping[tuple[str, int], Condition]
    default_decision: Mapping[str, Any]
    needs: frozenset[str]
    # Route or default content holding Liquid ("{" in a string), and which of the costly template
    # roots it mentions (read only then, as the engine does for message content).
    templated: bool = False
    template_roots: frozenset[str] = frozenset()


def _template_text(steps: Mapping[str, Mapping[str, Any]], default_decision: Mapping[str, Any]) -> str:
    """Every string of the journey's route and default content that could be a template."""
    found: list[str] = []

    def strings(value: Any) -> None:
        if isinstance(value, str):
            if "{" in value:
                found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    for step in steps.values():
        if step.get("type") == "route":
            strings(step.get("content"))
    strings(default_decision.get("content"))
    return "\n".join(found)


def compile_decide_journey(version: JourneyVersion) -> DecideJourney:
    """Compile a decide version's branch conditions (ConditionError on a bad one)."""
    definition = version.definition
    steps: dict[str, Mapping[str, Any]] = definition.get("steps") or {}
    conditions: dict[tuple[str, int], Condition] = {}
    needs: set[str] = set()
    for step_id, step in steps.items():
        if step.get("type") != "branch":
            continue
        for index, branch in enumerate(step.get("branches") or ()):
            compiled = compile_condition(branch.get("condition"))
            conditions[(step_id, index)] = compiled
            needs |= compiled.needs
    default_decision = definition.get("default_decision") or {}
    text = _template_text(steps, default_decision)
    roots = frozenset(root for root in ("session", "links") if root in text)
    return DecideJourney(
        journey_id=version.journey_id,
        journey_key=version.journey.key,
        version_id=version.id,
        version_number=version.number,
        placement=definition["trigger"]["placement"],
        start=definition["start"],
        steps=steps,
        conditions=conditions,
        default_decision=default_decision,
        # A template reading the live session needs it loaded, as a condition would.
        needs=frozenset(needs | (roots & {"session"})),
        templated=bool(text),
        template_roots=roots,
    )


@dataclass
class _Index:
    generation: Any = None
    by_placement: dict[str, list[DecideJourney]] = field(default_factory=dict)


_index = _Index()
_index_lock = threading.Lock()


def _load_index() -> dict[str, list[DecideJourney]]:
    by_placement: dict[str, list[DecideJourney]] = {}
    versions = JourneyVersion.objects.filter(status=VersionStatus.PUBLISHED).select_related("journey")
    for version in versions.order_by("journey__key"):
        trigger = (version.definition or {}).get("trigger") or {}
        if trigger.get("type") != "decide":
            continue
        try:
            compiled = compile_decide_journey(version)
        except (ConditionError, KeyError, TypeError, AttributeError) as error:
            # Publishing validates definitions, so this is a row edited behind the services.
            logger.error("decide journey %s v%s not loaded: %s", version.journey.key, version.number, error)
            continue
        by_placement.setdefault(compiled.placement, []).append(compiled)
    return by_placement


def placement_journeys(placement: str, generation: Any) -> list[DecideJourney]:
    """The placement's published decide journeys, in journey key order. Reloaded when the
    generation moved; with generation None (unknown: the database could not be asked) whatever
    is cached, loading once if nothing is. Raises DatabaseError only when a load was needed and
    failed."""
    global _index  # noqa: PLW0603 - the per-process cache
    current = _index
    if current.generation is not None and (generation is None or current.generation == generation):
        return current.by_placement.get(placement, [])
    with _index_lock:
        if _index is not current and (generation is None or _index.generation == generation):
            return _index.by_placement.get(placement, [])
        loaded = _load_index()
        # Unknown generation: keep it unknown, so the next request that reads one reloads.
        _index = _Index(generation=generation or "unknown", by_placement=loaded)
        return loaded.get(placement, [])


def placement_journeys_cached(placement: str) -> list[DecideJourney]:
    """What this process has compiled for the placement, without asking the database."""
    return _index.by_placement.get(placement, [])


def forget_compiled() -> None:
    """Drop this process's compiled journeys and its copy of the generation (tests; the
    generation does it otherwise)."""
    global _index, _generation  # noqa: PLW0603 - the per-process cache
    with _index_lock:
        _index = _Index()
        _generation = (0.0, None)


# --- Loading the customer ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str | None
    anonymous_id: str | None

    @property
    def subject(self) -> str:
        return self.user_id or self.anonymous_id or ""


def _find_customer(identity: Identity) -> Customer | None:
    if identity.user_id:
        found = customer_find(kind="user_id", value=identity.user_id)
        if found is not None:
            return found
    if identity.anonymous_id:
        return customer_find(kind="anonymous_id", value=identity.anonymous_id)
    return None


_LOOKUP_SQL = """
    SELECT c.id, c.traits, c.computed_state, c.merged_into_id{segments}
    FROM {identity} i JOIN {customer} c ON c.id = i.customer_id
    WHERE (i.kind = %s AND i.value = %s) OR (i.kind = %s AND i.value = %s)
    ORDER BY i.kind = 'user_id' DESC LIMIT 1
"""
_SEGMENTS_SQL = """,
    ARRAY(SELECT s.key FROM {membership} m JOIN {segment} s ON s.id = m.segment_id WHERE m.customer_id = c.id)
"""


@functools.cache
def _lookup_sql(with_segments: bool) -> str:
    """Table names are the models' own; every value is a parameter."""
    segments = ""
    if with_segments:
        segments = _SEGMENTS_SQL.format(
            membership=SegmentMembership._meta.db_table, segment=Segment._meta.db_table
        ).rstrip()
    return _LOOKUP_SQL.format(
        segments=segments, identity=profile_models.Identity._meta.db_table, customer=Customer._meta.db_table
    )


class _Statement:
    __slots__ = ("query",)

    def __init__(self, text: str) -> None:
        self.query = text.encode()


class _PreparedCursor(psycopg.Cursor[Any]):
    """A server-side binding cursor whose statements are prepared on the connection."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        result = super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)
        # Django's query log (connection.queries, CaptureQueriesContext) reads the statement from
        # `_query`, which psycopg leaves unset when it runs a prepared one.
        self._query = _Statement(str(query))  # type: ignore[assignment]
        return result


# psycopg prepares only when the connection's threshold is set; Django leaves it None (for
# connection poolers), and its own cursors bind client-side and never prepare, so a threshold
# this high changes nothing but what _PreparedCursor asks for.
_NEVER_BY_COUNT = 2**31  # as profiles.ingest and journeys.world set it


def _prepared_cursor() -> Any:
    """A Django cursor (logged, wrapped, its errors Django's) on the request's connection whose
    statements are prepared once per connection: the identity lookup, planned on every call,
    cost PostgreSQL about 0.2 ms of a decide request's CPU, and 0.03 ms once prepared."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _NEVER_BY_COUNT
    with connection.wrap_database_errors:
        return connection._prepare_cursor(_PreparedCursor(raw))  # type: ignore[attr-defined]


def _fetch_one(db: BaseDatabaseWrapper, sql: str, params: list[Any]) -> Any:
    """One row of a prepared statement on the request's connection `db`. Unless queries are
    being logged (DEBUG, the tests' CaptureQueriesContext) or wrapped, through a psycopg cursor
    kept per connection: a Django cursor wrapper and a psycopg cursor built per call cost as much
    of the lookup's Python as the statement did (as ingestion found, profiles/ingest.py). `db` is
    the connection itself, not django.db.connection, whose every attribute is a thread-local
    lookup raising and catching an exception (seven of them were a tenth of a request's
    instructions under callgrind)."""
    if db.queries_logged or db.execute_wrappers:
        with _prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    db.ensure_connection()
    raw = db.connection
    cached = getattr(db, "_decide_cursor", None)
    if cached is None or cached[0] is not raw or cached[1].closed:
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _NEVER_BY_COUNT
        cached = (raw, psycopg.Cursor(raw))
        db._decide_cursor = cached  # type: ignore[attr-defined]
    with db.wrap_database_errors:
        cached[1].execute(sql, params, prepare=True)
        return cached[1].fetchone()


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@dataclass(frozen=True, slots=True)
class _Found:
    """The live customer as decide reads it. The lookup row is not made a model instance unless
    a selector that takes one (computed traits, consent) is needed: building one cost more than
    the rest of the row's handling."""

    id: UUID
    traits: Mapping[str, Any]
    computed_state: Mapping[str, Any]
    model: Customer | None = None

    def as_customer(self) -> Customer:
        if self.model is not None:
            return self.model
        return Customer(id=self.id, traits=dict(self.traits), computed_state=dict(self.computed_state))


def _found(customer: Customer | None) -> _Found | None:
    if customer is None:
        return None
    return _Found(customer.id, customer.traits or {}, customer.computed_state or {}, customer)


def _find_customer_and_segments(identity: Identity, *, with_segments: bool) -> tuple[_Found | None, frozenset[str]]:
    """The live customer holding the userId (else the anonymousId), and its segment keys when
    asked: on PostgreSQL one statement (this is the decide hot path), through the profiles
    selector otherwise and for a merged profile."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        keys = [
            (
                "user_id",
                normalize("user_id", identity.user_id, settings.DEFAULT_PHONE_REGION) if identity.user_id else None,
            ),
            (
                "anonymous_id",
                normalize("anonymous_id", identity.anonymous_id, settings.DEFAULT_PHONE_REGION)
                if identity.anonymous_id
                else None,
            ),
        ]
        params = [item for kind, value in keys for item in (kind, value or "")]
        row = _fetch_one(db, _lookup_sql(with_segments), params)
        if row is None:
            return None, frozenset()
        if row[3] is None:
            live = _Found(row[0], _json(row[1]) or {}, _json(row[2]) or {})
            return live, frozenset(row[4]) if with_segments else frozenset()
    found = _found(_find_customer(identity))
    if found is None or not with_segments:
        return found, frozenset()
    return found, frozenset(
        SegmentMembership.objects.filter(customer_id=found.id).values_list("segment__key", flat=True)
    )


def _history(customer_id: UUID) -> EventHistory:
    """The customer's events as `performed` conditions count them (journeys.segments)."""
    from journeys.segments import DbEventHistory

    history: EventHistory = DbEventHistory(customer_id)
    return history


def request_event(channel: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The request as conditions and templates read it: the event `Decide`."""
    return {"name": "Decide", "type": "decide", "channel": channel, "properties": dict(context)}


class SessionUnavailable(Exception):
    pass


def load_context(
    *, identity: Identity, needs: frozenset[str], channel: str, context: Mapping[str, Any], now: datetime
) -> tuple[EvalContext, UUID | None]:
    """The evaluation context for a decide request, reading only the roots in `needs`.
    Raises DatabaseError (database down) or SessionUnavailable (the session provider failed)."""
    customer, segments = _find_customer_and_segments(identity, with_segments="segments" in needs)
    traits: Mapping[str, Any] = {}
    computed: Mapping[str, Any] = {}
    consent: Mapping[str, Mapping[str, bool]] = {}
    session: Mapping[str, Any] | None = None
    kwargs: dict[str, Any] = {}
    if customer is not None:
        traits = customer.traits
        if "computed" in needs:
            computed = computed_traits_of(customer.as_customer())
        if "consent" in needs:
            consent = customer_consent(customer=customer.as_customer())
        if "session" in needs:
            try:
                session = journey_contracts.session_for(customer.id)
            except DatabaseError:
                raise
            except Exception as error:  # any failure of a provider degrades the answer
                raise SessionUnavailable(str(error)) from error
        if "history" in needs:
            kwargs["history"] = _history(customer.id)
    zone = traits.get("timezone")
    return (
        EvalContext(
            now=now,
            event=request_event(channel, context),
            traits=traits,
            computed=computed,
            segments=segments,
            session=session,
            consent=consent,
            timezone=zone if isinstance(zone, str) and zone else None,
            fallback_timezone=getattr(settings, "JOURNEYS_FALLBACK_TIMEZONE", "UTC"),
            customer_id=str(customer.id) if customer is not None else None,
            **kwargs,
        ),
        customer.id if customer is not None else None,
    )


# --- Walking a decide journey (pure over the compiled journey and the context) -------------------

_MAX_STEPS = 200


@dataclass(frozen=True, slots=True)
class Walk:
    route: str | None
    content: Mapping[str, Any]
    outcome: str  # "route", "exit", "holdout", "unsupported_step", "loop"
    path: list[dict[str, Any]]


def _bucket(subject: str, journey_key: str, step_id: str) -> int:
    """0..99, stable for a customer, a journey and a split step."""
    digest = hashlib.blake2b(f"{journey_key}:{step_id}:{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def walk(journey: DecideJourney, ctx: EvalContext, *, subject: str) -> Walk:  # noqa: PLR0911 - a return per way a walk ends
    """Follow the journey from its start to a route or an end, explaining every branch."""
    path: list[dict[str, Any]] = []
    step_id: str | None = journey.start
    for _ in range(_MAX_STEPS):
        step = journey.steps.get(step_id or "")
        if step is None:
            return Walk(None, {}, "exit", path)
        kind = step.get("type")
        if kind == "branch":
            chosen: Any = "default"
            seen = []
            next_id = step.get("default")
            for index, branch in enumerate(step.get("branches") or ()):
                condition = journey.conditions[(step_id or "", index)]
                explanation = condition.explain(ctx)
                matched = bool(explanation.get("result")) if isinstance(explanation, dict) else False
                seen.append(explanation)
                if matched:
                    chosen, next_id = index, branch.get("next")
                    break
            path.append({"step": step_id, "kind": kind, "branch": chosen, "next": next_id, "conditions": seen})
            step_id = next_id
        elif kind == "random_split":
            bucket = _bucket(subject, journey.journey_key, step_id or "")
            holdout = int(step.get("holdout") or 0)
            if bucket < holdout:
                path.append({"step": step_id, "kind": kind, "bucket": bucket, "holdout": True})
                return Walk(None, {}, "holdout", path)
            threshold = holdout
            next_id = None
            for index, split in enumerate(step.get("paths") or ()):
                threshold += int(split.get("percent") or 0)
                if bucket < threshold:
                    next_id = split.get("next")
                    path.append({"step": step_id, "kind": kind, "bucket": bucket, "path": index, "next": next_id})
                    break
            else:
                path.append({"step": step_id, "kind": kind, "bucket": bucket, "path": None})
                return Walk(None, {}, "exit", path)
            step_id = next_id
        elif kind == "route":
            destination = step.get("destination")
            path.append({"step": step_id, "kind": kind, "route": destination})
            return Walk(destination, step.get("content") or {}, "route", path)
        elif kind == "exit":
            path.append({"step": step_id, "kind": kind})
            return Walk(None, {}, "exit", path)
        else:
            # Messages, waits and the other actions run in the engine, not in a request.
            path.append({"step": step_id, "kind": kind, "note": "not evaluated by decide"})
            return Walk(None, {}, "unsupported_step", path)
    return Walk(None, {}, "loop", path)


# --- The service -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionResult:
    decision_id: UUID
    placement: str
    route: str | None
    content: Mapping[str, Any]
    journey: str | None
    version: int | None
    degraded: bool
    reason: str | None

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "decision_id": str(self.decision_id),
            "placement": self.placement,
            "route": self.route,
            "content": self.content,
            "journey": self.journey,
            "version": self.version,
            "degraded": self.degraded,
        }
        if self.degraded:
            body["reason"] = self.reason
        return body


class UnknownPlacement(Exception):
    pass


# --- Recording decisions ------------------------------------------------------------------------
#
# A decision is a row the history explains (GET /api/v1/decisions/{id}). Writing it in the request
# cost most of decide's PostgreSQL time (an INSERT and a commit, with its WAL flush, per request)
# and a tenth of its web CPU. With DECIDE_RECORD_LINGER_MS > 0 the request instead hands the row to
# this process's recorder, whose thread writes what has gathered in one multi-row INSERT when the
# oldest row has waited that long (or DECIDE_RECORD_MAX_BATCH rows wait). The trade-off, bounded by
# the setting: for up to the linger a decision id may not resolve yet (decision_get waits for a
# decision that young instead of answering 404), and a process killed without a clean exit
# (SIGKILL, OOM, power) loses the rows it held, not the answers it gave. A clean exit (the web
# server's graceful stop, interpreter exit) writes them (config.core.server.at_worker_exit). 0
# writes in the request.
#
# Whichever way, a row that cannot be written because the database is down stays in memory (at
# most _PENDING_LIMIT rows) and is written with the next batch that reaches the database.

_COLUMNS = ("id", "placement", "customer_id", "version_id", "at", "degraded", "result", "explanation")
_ROW_SQL = "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"
# After a failed write, the recorder waits this long before trying again (each attempt against
# an unreachable database blocks for the connection timeout).
_RETRY_SECONDS = 1.0
# The recorder's thread closes its database connection after this long without a decision.
IDLE_CLOSE_SECONDS = 1.0

DecisionRow = tuple[UUID, str, UUID | None, UUID | None, datetime, bool, str, str]


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # What orjson refuses and json takes (integers past 64 bits): as the JSONField would.
        import json

        return json.dumps(value)


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
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT (id) DO NOTHING"  # noqa: S608
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


def _made_at(decision_id: UUID) -> float | None:
    """When a decision id was made (Unix seconds), if it is one of new_decision_id's."""
    return (decision_id.int >> 80) / 1000 if decision_id.version == 7 else None


def _default(
    journey: DecideJourney | None, reason: str, explanation: dict[str, Any]
) -> tuple[str | None, Mapping[str, Any]]:
    if journey is None:
        return None, {}
    default = journey.default_decision
    explanation["default_decision"] = {"journey": journey.journey_key, "reason": reason}
    return default.get("route"), default.get("content") or {}


def _render(
    journey: DecideJourney,
    content: Mapping[str, Any],
    *,
    ctx: EvalContext | None,
    event: Mapping[str, Any],
    customer_id: UUID | None,
    step: str | None,
    explanation: dict[str, Any],
) -> Mapping[str, Any]:
    """The answer's content rendered with Liquid as message content is (journeys.templates):
    over `profile` (traits), `event` (the request), `session`, `journey` and `links`; when a
    variable is missing or rendering fails, the journey's default_decision content rendered
    instead, never a half-rendered answer; the explanation says what was missing. A default
    answer (degraded too) renders the default content over what could be read."""
    from journeys.templates import render_content

    links: Mapping[str, Any] = {}
    if "links" in journey.template_roots and customer_id is not None:
        try:
            links = journey_contracts.links_for(customer_id)
        except Exception:  # a provider that fails leaves its link missing: the default content
            logger.warning("decide: links unavailable for %s", customer_id, exc_info=True)
    context = {
        "profile": dict(ctx.traits) if ctx is not None else {},
        "event": dict(event),
        "session": dict(ctx.session or {}) if ctx is not None else {},
        "journey": {"key": journey.journey_key, "step": step},
        "links": dict(links),
    }
    default = journey.default_decision.get("content") or {}
    rendered = render_content(content, context, None if step is None else default)
    if not rendered.ok:
        explanation["content"] = {
            "missing": rendered.missing,
            "errors": rendered.errors,
            "used_default": rendered.used_default,
        }
    return rendered.content


def decision_make(
    *,
    source_id: UUID | None,
    placement: str,
    identity: Identity,
    channel: str,
    context: Mapping[str, Any],
    degraded_reason: str | None = None,
) -> DecisionResult:
    """Answer a decide request and record the Decision. Raises UnknownPlacement when no decide
    journey is published for the placement. The caller counts the source's rate limit (and
    passes degraded_reason="redis_unavailable" when it could not)."""
    started = time.perf_counter()
    now = timezone.now()
    reason = degraded_reason
    generation: Any = None
    try:
        if reason != "database_unavailable":
            generation = _current_generation()
        journeys = placement_journeys(placement, generation)
    except DatabaseError:
        journeys = placement_journeys_cached(placement)
        reason = reason or "database_unavailable"
    if not journeys and reason != "database_unavailable":
        # The database said so: an unknown placement is the caller's mistake, whatever else is down.
        raise UnknownPlacement(placement)
    label = placement if journeys else "unknown"
    explanation: dict[str, Any] = {"journeys": []}
    customer_id: UUID | None = None
    route: str | None = None
    content: Mapping[str, Any] = {}
    answered_by: DecideJourney | None = None
    ctx: EvalContext | None = None
    route_step: str | None = None
    if reason is None:
        needs = frozenset().union(*(j.needs for j in journeys))
        explanation["loaded"] = sorted(needs)
        try:
            ctx, customer_id = load_context(identity=identity, needs=needs, channel=channel, context=context, now=now)
        except DatabaseError:
            reason = "database_unavailable"
        except SessionUnavailable:
            reason = "session_unavailable"
        else:
            explanation["customer_found"] = customer_id is not None
            for journey in journeys:
                result = walk(journey, ctx, subject=str(customer_id or identity.subject))
                explanation["journeys"].append(
                    {
                        "journey": journey.journey_key,
                        "version": journey.version_number,
                        "outcome": result.outcome,
                        "path": result.path,
                    }
                )
                if result.outcome == "route":
                    route, content, answered_by = result.route, result.content, journey
                    route_step = result.path[-1]["step"]
                    break
            if answered_by is None:
                answered_by = journeys[0]
                route, content = _default(answered_by, "no route reached", explanation)
    if reason is not None:
        answered_by = journeys[0] if journeys else None
        route, content = _default(answered_by, reason, explanation)
        explanation["degraded"] = reason
        metrics.DECIDE_DEGRADED.labels(placement=label, reason=reason).inc()
    if answered_by is not None and answered_by.templated:
        content = _render(
            answered_by,
            content,
            ctx=ctx,
            event=ctx.event or {} if ctx is not None else request_event(channel, context),
            customer_id=customer_id,
            step=route_step,
            explanation=explanation,
        )
    result_body = {"route": route, "content": dict(content)}
    decision_id = new_decision_id()
    recorder.submit(
        (
            decision_id,
            placement,
            customer_id,
            answered_by.version_id if answered_by else None,
            now,
            reason is not None,
            _dumps({**result_body, "journey": answered_by.journey_key if answered_by else None, "channel": channel}),
            _dumps(explanation),
        )
    )
    metrics.DECIDE_LATENCY.labels(placement=label).observe(time.perf_counter() - started)
    return DecisionResult(
        decision_id=decision_id,
        placement=placement,
        route=route,
        content=content,
        journey=answered_by.journey_key if answered_by else None,
        version=answered_by.version_number if answered_by else None,
        degraded=reason is not None,
        reason=reason,
    )


# How long past DECIDE_RECORD_LINGER_MS decision_get waits for a young decision to be written.
GET_WAIT_MARGIN_SECONDS = 1.0
_GET_POLL_SECONDS = 0.02


def decision_get(*, decision_id: UUID) -> Decision | None:
    """The decision, once written. One this process still holds is written first; one another
    process may still hold (its id is younger than the linger plus GET_WAIT_MARGIN_SECONDS) is
    waited for, so an id decide answered resolves; any other unknown id is None at once."""
    decisions = Decision.objects.select_related("version__journey")
    found = decisions.filter(id=decision_id).first()
    if found is not None:
        return found
    if recorder.holds(decision_id):
        recorder.flush()
        return decisions.filter(id=decision_id).first()
    made_at = _made_at(decision_id)
    if made_at is None:
        return None
    deadline = made_at + settings.DECIDE_RECORD_LINGER_MS / 1000 + GET_WAIT_MARGIN_SECONDS
    while found is None and time.time() < deadline:
        time.sleep(_GET_POLL_SECONDS)
        found = decisions.filter(id=decision_id).first()
    return found
