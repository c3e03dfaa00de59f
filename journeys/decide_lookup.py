"""Loading the customer a decide request is about: the hot path's reads.

One identity lookup, a statement prepared once per connection that also returns the customer's
segment keys when a condition reads them, then one query per other root the compiled conditions
need (consent; computed traits come from the profile row), the live session through the session
provider, and the event history as `performed` conditions count it. Only the roots in `needs`
are read.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from journeys import contracts as journey_contracts
from journeys.conditions import EvalContext, EventHistory
from journeys.models import Segment, SegmentMembership
from journeys.selectors import customer_consent
from profiles import facade as profiles
from profiles import models as profile_tables
from profiles.contracts import CustomerProfile


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str | None
    anonymous_id: str | None

    @property
    def subject(self) -> str:
        return self.user_id or self.anonymous_id or ""


def _find_customer(identity: Identity, *, with_computed: bool) -> CustomerProfile | None:
    if identity.user_id:
        found = profiles.customer_find(kind="user_id", value=identity.user_id, computed=with_computed)
        if found is not None:
            return found
    if identity.anonymous_id:
        return profiles.customer_find(kind="anonymous_id", value=identity.anonymous_id, computed=with_computed)
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
    """Table names are the models' own; every value is a parameter. Profiles' identity and
    customer tables are read here, not through the facade, so that the customer and its segment
    keys come in one prepared statement (decide's p99 target is 10 ms): the one place another app
    reads profiles' tables (pyproject.toml, the import-linter contract's ignore_imports)."""
    segments = ""
    if with_segments:
        segments = _SEGMENTS_SQL.format(
            membership=SegmentMembership._meta.db_table, segment=Segment._meta.db_table
        ).rstrip()
    return _LOOKUP_SQL.format(
        segments=segments,
        identity=profile_tables.Identity._meta.db_table,
        customer=profile_tables.Customer._meta.db_table,
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
    """The live customer as decide reads it: its computed traits only when a condition reads them
    (they cost the definitions' evaluation)."""

    id: UUID
    traits: Mapping[str, Any]
    computed: Mapping[str, Any]


def _find_customer_and_segments(
    identity: Identity, *, with_segments: bool, with_computed: bool
) -> tuple[_Found | None, frozenset[str]]:
    """The live customer holding the userId (else the anonymousId), and its segment keys when
    asked: one prepared statement (this is the decide hot path); a merged profile is read through
    profiles.facade.customer_find, which follows it to the profile it was merged into."""
    keys = [
        ("user_id", profiles.identity_normalize(kind="user_id", value=identity.user_id) if identity.user_id else None),
        (
            "anonymous_id",
            profiles.identity_normalize(kind="anonymous_id", value=identity.anonymous_id)
            if identity.anonymous_id
            else None,
        ),
    ]
    params = [item for kind, value in keys for item in (kind, value or "")]
    row = _fetch_one(connections[DEFAULT_DB_ALIAS], _lookup_sql(with_segments), params)
    if row is None:
        return None, frozenset()
    if row[3] is None:
        computed = profiles.computed_traits_from_state(state=_json(row[2]) or {}) if with_computed else {}
        live = _Found(row[0], _json(row[1]) or {}, computed)
        return live, frozenset(row[4]) if with_segments else frozenset()
    profile = _find_customer(identity, with_computed=with_computed)
    if profile is None:
        return None, frozenset()
    found = _Found(profile.id, profile.traits, profile.computed)
    if not with_segments:
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
    customer, segments = _find_customer_and_segments(
        identity, with_segments="segments" in needs, with_computed="computed" in needs
    )
    traits: Mapping[str, Any] = {}
    computed: Mapping[str, Any] = {}
    consent: Mapping[str, Mapping[str, bool]] = {}
    session: Mapping[str, Any] | None = None
    kwargs: dict[str, Any] = {}
    if customer is not None:
        traits = customer.traits
        computed = customer.computed
        if "consent" in needs:
            consent = customer_consent(customer=customer)
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
