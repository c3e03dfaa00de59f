"""The ingestion store: the set-based SQL that resolution and ingestion write through.

Every method is one statement over arrays bound as parameters (prepared once per connection),
whatever the batch size: profiles/ingest.py and profiles/resolution.py call it, nothing else.
"""

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.db import IntegrityError, OperationalError, connection

from config.core.transactions import is_retryable
from profiles import contracts, trait_ops
from profiles.contracts import SourceInfo
from profiles.identifiers import IdentityKey
from profiles.messages import Message


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    code: str
    detail: str


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)


TraitState = tuple[dict[str, Any], dict[str, str], list[str]]


class IdentityConflict(Exception):
    """Another transaction claimed an identity this batch meant to create: resolve again."""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


Held = dict[uuid.UUID, dict[str, set[str]]]


class _PreparedCursor:
    """A server-side-binding cursor that prepares its statements.

    Django's cursors bind parameters on the client, quoting every array element into the SQL text
    in Python, and PostgreSQL then parses and plans that text anew on each call. The statements
    below are fixed texts taking long arrays, so here the arrays travel as parameters and each
    statement is planned once per connection.
    """

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> None:
        with connection.wrap_database_errors:
            self._cursor.execute(sql, params, prepare=True)

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


@contextlib.contextmanager
def _prepared_cursor() -> Iterator[_PreparedCursor]:
    # Reuse this thread's connection's cursor (a Django cursor and a psycopg cursor per statement
    # were a noticeable share of a /v1/track call). Inside a transaction the connection is open
    # already; outside one, first what connection.cursor() would do: (re)open it.
    if not connection.in_atomic_block:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
    raw = connection.connection
    cached = getattr(connection, "_throughline_prepared", None)
    if cached is None or cached[0] is not raw or cached[1].closed:
        _allow_prepare(raw)
        cached = (raw, psycopg.Cursor(raw))
        connection._throughline_prepared = cached  # type: ignore[attr-defined]
    yield _PreparedCursor(cached[1])


def _allow_prepare(raw: psycopg.Connection[Any]) -> None:
    if raw.prepare_threshold is None:
        # Django turns automatic preparing off (None), which also refuses prepare=True. A
        # threshold no statement reaches keeps automatic preparing off and allows it here;
        # Django's own client-side cursors never prepare whatever the setting.
        raw.prepare_threshold = 2**31


class IngestStore:
    """Set-based statements over unnest()-ed arrays: one round trip per step, whatever the batch size."""

    # merged_into always names the final survivor, so one hop finds the live profile. The
    # planner cannot see how many rows the JSON holds (it assumes 100) and would hash-join a
    # sequential scan of every identity; LATERAL ... LIMIT 1 keeps it to one index probe per key,
    # whatever the table's size or statistics.
    _LOOKUP = (
        "SELECT u.kind, u.value, l.customer_id FROM json_to_recordset(%s::json) AS u(kind text, value text) "
        "CROSS JOIN LATERAL (SELECT COALESCE(c.merged_into_id, c.id) AS customer_id "
        "FROM profiles_identity i JOIN profiles_customer c ON c.id = i.customer_id "
        "WHERE i.kind = u.kind AND i.value = u.value LIMIT 1) AS l"
    )
    # The same, and (flagged false) the limited-kind identities of the customers found: merges
    # move identities to the survivor, so they are on the live profile. LATERAL again, for the
    # same reason: as a semi-join the planner hashed `found` against a scan of every identity of
    # those kinds (4.2 ms a batch at 20,000 identities, growing with the table; 0.6 ms as probes).
    # OFFSET 0 stops the planner from flattening the LATERAL back into that join.
    _LOOKUP_HELD = (
        f"WITH found AS MATERIALIZED ({_LOOKUP}) "  # noqa: S608 - constant fragments only
        "SELECT kind, value, customer_id, true FROM found UNION ALL "
        "SELECT h.kind, h.value, h.customer_id, false FROM (SELECT DISTINCT customer_id FROM found) AS f "
        "CROSS JOIN LATERAL (SELECT i.kind, i.value, i.customer_id FROM profiles_identity i "
        "WHERE i.customer_id = f.customer_id AND i.kind = ANY(%s::text[]) OFFSET 0) AS h"
    )

    def lookup(self, keys: set[IdentityKey], limited_kinds: list[str]) -> tuple[dict[IdentityKey, uuid.UUID], Held]:
        if not keys:
            return {}, {}
        owners: dict[IdentityKey, uuid.UUID] = {}
        held: Held = {}
        rows = _json([{"kind": kind, "value": value} for kind, value in keys])
        with _prepared_cursor() as cursor:
            if not limited_kinds:
                cursor.execute(self._LOOKUP, [rows])
                return {(kind, value): customer_id for kind, value, customer_id in cursor.fetchall()}, held
            cursor.execute(self._LOOKUP_HELD, [rows, limited_kinds])
            for kind, value, customer_id, asked in cursor.fetchall():
                if asked:
                    owners[(kind, value)] = customer_id
                else:
                    held.setdefault(customer_id, {}).setdefault(kind, set()).add(value)
        return owners, held

    def insert_customers(self, customers: dict[uuid.UUID, TraitState], now: datetime) -> None:
        with _prepared_cursor() as cursor:
            cursor.execute(
                "INSERT INTO profiles_customer (id, traits, trait_times, once_keys, created_at, updated_at) "
                "SELECT u.id, u.traits, u.times, u.once, %s, %s "
                "FROM json_to_recordset(%s::json) AS u(id uuid, traits jsonb, times jsonb, once jsonb)",
                [
                    now,
                    now,
                    _json(
                        [
                            {"id": cid, "traits": traits, "times": times, "once": once}
                            for cid, (traits, times, once) in customers.items()
                        ]
                    ),
                ],
            )

    def insert_identities(self, identities: dict[IdentityKey, uuid.UUID], source: SourceInfo, now: datetime) -> None:
        keys = list(identities)
        with _prepared_cursor() as cursor:
            cursor.execute(
                "INSERT INTO profiles_identity (kind, value, customer_id, source_id, created_at, updated_at) "
                "SELECT u.kind, u.value, u.customer_id, %s, %s, %s "
                "FROM json_to_recordset(%s::json) AS u(kind text, value text, customer_id uuid) "
                "ON CONFLICT (kind, value) DO NOTHING RETURNING 1",
                [
                    source.id,
                    now,
                    now,
                    _json(
                        [
                            {"kind": kind, "value": value, "customer_id": identities[(kind, value)]}
                            for kind, value in keys
                        ]
                    ),
                ],
            )
            if len(cursor.fetchall()) != len(keys):
                raise IdentityConflict

    # New customers and their identities in one statement, without a savepoint (which cost two
    # round trips on every request bringing a new identity). Identities that another transaction
    # claimed first are skipped by ON CONFLICT; if any was, insert_new deletes what this statement
    # inserted (rows only this transaction can see) and the caller resolves again.
    _INSERT_NEW = """
        WITH customers AS (
            INSERT INTO profiles_customer (id, traits, trait_times, once_keys, created_at, updated_at)
            SELECT u.id, u.traits, u.times, u.once, %(now)s, %(now)s
            FROM json_to_recordset(%(customers)s::json) AS u(id uuid, traits jsonb, times jsonb, once jsonb)
        )
        INSERT INTO profiles_identity (kind, value, customer_id, source_id, created_at, updated_at)
        SELECT u.kind, u.value, u.customer_id, %(source)s, %(now)s, %(now)s
        FROM json_to_recordset(%(identities)s::json) AS u(kind text, value text, customer_id uuid)
        ON CONFLICT (kind, value) DO NOTHING
        RETURNING id
    """

    def insert_new(
        self,
        customers: dict[uuid.UUID, TraitState],
        identities: dict[IdentityKey, uuid.UUID],
        source: SourceInfo,
        now: datetime,
    ) -> None:
        with _prepared_cursor() as cursor:
            cursor.execute(
                self._INSERT_NEW,
                {
                    "now": now,
                    "source": source.id,
                    "customers": _json(
                        [
                            {"id": cid, "traits": traits, "times": times, "once": once}
                            for cid, (traits, times, once) in customers.items()
                        ]
                    ),
                    "identities": _json(
                        [
                            {"kind": kind, "value": value, "customer_id": cid}
                            for (kind, value), cid in identities.items()
                        ]
                    ),
                },
            )
            inserted = [row[0] for row in cursor.fetchall()]
            if len(inserted) == len(identities):
                return
            cursor.execute("DELETE FROM profiles_identity WHERE id = ANY(%s)", [inserted])
            cursor.execute("DELETE FROM profiles_customer WHERE id = ANY(%s)", [list(customers)])
        raise IdentityConflict

    def merge_traits(self, updates: dict[uuid.UUID, trait_ops.TraitOps], now: datetime) -> None:
        # ($set_once || current || $set) - $unset: $set_once only fills keys the profile lacks.
        with _prepared_cursor() as cursor:
            cursor.execute(
                """
                UPDATE profiles_customer AS c SET
                    traits = ((u.set_once || c.traits) || u.set) - ARRAY(SELECT jsonb_array_elements_text(u.unset)),
                    trait_times = ((u.once_times || c.trait_times) || u.set_times)
                                  - ARRAY(SELECT jsonb_array_elements_text(u.unset)),
                    once_keys = (SELECT COALESCE(jsonb_agg(DISTINCT k), '[]'::jsonb)
                                 FROM jsonb_array_elements(c.once_keys || u.set_once_keys) AS k),
                    updated_at = %s
                FROM json_to_recordset(%s::json) AS u(
                    id uuid, set jsonb, set_once jsonb, unset jsonb, set_times jsonb, once_times jsonb,
                    set_once_keys jsonb
                )
                WHERE c.id = u.id AND c.id = ANY(%s::uuid[])
                """,
                [
                    now,
                    _json(
                        [
                            {
                                "id": cid,
                                "set": o.set,
                                "set_once": o.set_once,
                                "unset": o.unset,
                                "set_times": dict.fromkeys(o.set, o.set_at),
                                "once_times": dict.fromkeys(o.set_once, o.set_at),
                                "set_once_keys": sorted(o.set_once),
                            }
                            for cid, o in updates.items()
                        ]
                    ),
                    # The ids again as an array: the primary-key index finds them, where a join on
                    # the JSON alone was planned as a sequential scan of every customer.
                    list(updates),
                ],
            )

    # The whole of a simple call (see _one_statement_will_do) in one statement and so one
    # transaction, without BEGIN and COMMIT round trips: each identity is looked up, the missing
    # ones get a new profile each, and the events and their outbox rows go in. A /v1/track call
    # took five round trips (BEGIN, lookup, new identity, events, COMMIT) and Django's
    # transaction bookkeeping; Python's share of each was most of the call's cost. The identity
    # insert has no ON CONFLICT: when another transaction claimed a new identity first, the
    # statement fails as a whole, leaving nothing, and the call takes the general path.
    # Each profile found is read under FOR KEY SHARE (the lock the events' foreign key takes at
    # commit anyway), as merging.customers_locked_for_writing does on the general path: a merge
    # holding it is waited for, and its survivor, read then, is locked and written to instead.
    _INGEST_SIMPLE = """
        WITH k AS MATERIALIZED (
            SELECT * FROM json_to_recordset(%(keys)s::json) AS k(kind text, value text)
        ), found AS MATERIALIZED (
            SELECT k.kind, k.value, l.customer_id FROM k CROSS JOIN LATERAL (
                SELECT COALESCE(c.merged_into_id, c.id) AS customer_id
                FROM profiles_identity i JOIN profiles_customer c ON c.id = i.customer_id
                WHERE i.kind = k.kind AND i.value = k.value LIMIT 1
                FOR KEY SHARE OF c
            ) AS l
        ), live AS MATERIALIZED (
            SELECT f.kind, f.value, COALESCE(c.merged_into_id, c.id) AS customer_id
            FROM found f JOIN profiles_customer c ON c.id = f.customer_id
            FOR KEY SHARE OF c
        ), missing AS MATERIALIZED (
            SELECT k.kind, k.value, gen_random_uuid() AS new_id FROM k
            WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.kind = k.kind AND f.value = k.value)
        ), new_customers AS (
            INSERT INTO profiles_customer (id, traits, trait_times, once_keys, created_at, updated_at)
            SELECT new_id, '{}', '{}', '[]', %(now)s, %(now)s FROM missing
        ), new_identities AS (
            INSERT INTO profiles_identity (kind, value, customer_id, source_id, created_at, updated_at)
            SELECT kind, value, new_id, %(source)s, %(now)s, %(now)s FROM missing
            RETURNING kind, value, customer_id
        ), owners AS MATERIALIZED (
            SELECT kind, value, customer_id FROM live
            UNION ALL SELECT kind, value, customer_id FROM new_identities
        ), u AS MATERIALIZED (
            SELECT nextval('profiles_event_id_seq') AS id, u.* FROM json_to_recordset(%(rows)s::json) AS u(
                position int, message_id text, type text, name text, kind text, value text, user_id text,
                anonymous_id text, ts timestamptz, original_ts timestamptz, sent_at timestamptz,
                properties jsonb, context jsonb, extra jsonb, schema_version_id bigint, schema_violations jsonb
            )
        ), keys AS (
            INSERT INTO profiles_eventkey (source_id, message_id, received_at, event_id)
            SELECT %(source)s, message_id, %(now)s, id FROM u
            ON CONFLICT (source_id, message_id) DO NOTHING
            RETURNING event_id
        ), inserted AS (
            INSERT INTO profiles_event (
                id, source_id, message_id, type, name, customer_id, channel, user_id, anonymous_id,
                timestamp, original_timestamp, sent_at, received_at, properties, context, extra,
                schema_version_id, schema_violations
            )
            SELECT u.id, %(source)s, u.message_id, u.type, u.name, o.customer_id, %(channel)s, u.user_id,
                   u.anonymous_id, u.ts, u.original_ts, u.sent_at, %(now)s, u.properties, u.context, u.extra,
                   u.schema_version_id, u.schema_violations
            FROM u JOIN keys k ON k.event_id = u.id JOIN owners o ON o.kind = u.kind AND o.value = u.value
            ORDER BY u.position
            RETURNING id
        ), outbox AS (
            INSERT INTO profiles_eventoutbox (event_id, enqueued_at, attempts)
            SELECT id, %(now)s, 0 FROM inserted
            RETURNING event_id
        )
        SELECT (SELECT array_agg(event_id ORDER BY event_id) FROM outbox),
               (SELECT array_agg(kind) FROM owners), (SELECT array_agg(value) FROM owners),
               (SELECT array_agg(customer_id) FROM owners)
    """

    def ingest_simple(
        self, source: SourceInfo, messages: list[Message], *, received_at: datetime, parsed: IngestResult
    ) -> IngestResult | None:
        """Store a simple call in one statement; None (nothing stored) when another request
        created one of its new identities meanwhile, or deadlocked with it."""
        keys = {m.identities[0]: None for m in messages}
        rows = orjson.dumps(
            [
                {
                    "position": position,
                    "message_id": m.message_id,
                    "type": m.type,
                    "name": m.name,
                    "kind": m.identities[0][0],
                    "value": m.identities[0][1],
                    "user_id": m.user_id,
                    "anonymous_id": m.anonymous_id,
                    "ts": m.timestamp,
                    "original_ts": m.original_timestamp,
                    "sent_at": m.sent_at,
                    "properties": m.properties,
                    "context": m.context,
                    "extra": m.extra,
                    "schema_version_id": m.schema_version_id,
                    "schema_violations": m.schema_violations,
                }
                for position, m in enumerate(messages)
            ]
        ).decode()
        params = {
            # Sorted, so two calls creating overlapping identities insert them in one order and
            # the later waits for the earlier rather than deadlocking with it.
            "keys": _json([{"kind": kind, "value": value} for kind, value in sorted(keys)]),
            "rows": rows,
            "now": received_at,
            "source": source.id,
            "channel": source.channel,
        }
        try:
            with _prepared_cursor() as cursor:
                cursor.execute(self._INGEST_SIMPLE, params)
                event_ids, kinds, values, customer_ids = cursor.fetchall()[0]
        except IntegrityError:
            return None
        except OperationalError as error:
            # A deadlock with a general-path call: nothing was stored; that path retries.
            if not is_retryable(error):
                raise
            return None
        owners = dict(zip(zip(kinds, values, strict=True), customer_ids, strict=True))
        for m in messages:
            m.customer_id = owners[m.identities[0]]
        result = IngestResult(duplicates=parsed.duplicates, rejected=parsed.rejected, suppressed=parsed.suppressed)
        result.event_ids = event_ids or []
        result.accepted = len(result.event_ids)
        result.duplicates += len(messages) - result.accepted
        if result.event_ids:
            contracts.notify_accepted(result.event_ids)
        return result

    # Deduplication (both paths): each row takes its event id first, then its key goes into
    # profiles_eventkey ON CONFLICT DO NOTHING, and only the rows whose key went in are stored as
    # events. The key table is unpartitioned and unique across the events' partitions; a
    # concurrent request holding the same key uncommitted makes this one wait for its outcome,
    # so a duplicate is stored once. A duplicate's id is drawn and left unused.
    def insert_events(self, source: SourceInfo, messages: list[Message], received_at: datetime) -> list[int]:
        # The rows go as one JSON document: orjson writes it in one call, where an array per
        # column cost a Python loop per column and element; properties and context stay objects.
        rows = orjson.dumps(
            [
                {
                    "message_id": m.message_id,
                    "type": m.type,
                    "name": m.name,
                    "customer_id": m.customer_id,
                    "user_id": m.user_id,
                    "anonymous_id": m.anonymous_id,
                    "ts": m.timestamp,
                    "original_ts": m.original_timestamp,
                    "sent_at": m.sent_at,
                    "properties": m.properties,
                    "context": m.context,
                    "extra": m.extra,
                    "schema_version_id": m.schema_version_id,
                    "schema_violations": m.schema_violations,
                }
                for m in messages
            ]
        ).decode()
        with _prepared_cursor() as cursor:
            cursor.execute(
                """
                WITH u AS MATERIALIZED (
                    SELECT nextval('profiles_event_id_seq') AS id, u.* FROM json_to_recordset(%(rows)s::json) AS u(
                        message_id text, type text, name text, customer_id uuid, user_id text, anonymous_id text,
                        ts timestamptz, original_ts timestamptz, sent_at timestamptz,
                        properties jsonb, context jsonb, extra jsonb, schema_version_id bigint, schema_violations jsonb
                    )
                ), keys AS (
                    INSERT INTO profiles_eventkey (source_id, message_id, received_at, event_id)
                    SELECT %(source)s, message_id, %(now)s, id FROM u
                    ON CONFLICT (source_id, message_id) DO NOTHING
                    RETURNING event_id
                ), inserted AS (
                    INSERT INTO profiles_event (
                        id, source_id, message_id, type, name, customer_id, channel, user_id, anonymous_id,
                        timestamp, original_timestamp, sent_at, received_at, properties, context, extra,
                        schema_version_id, schema_violations
                    )
                    SELECT u.id, %(source)s, u.message_id, u.type, u.name, u.customer_id, %(channel)s, u.user_id,
                           u.anonymous_id, u.ts, u.original_ts, u.sent_at, %(now)s, u.properties, u.context, u.extra,
                           u.schema_version_id, u.schema_violations
                    FROM u JOIN keys k ON k.event_id = u.id
                    ORDER BY u.id
                    RETURNING id
                )
                INSERT INTO profiles_eventoutbox (event_id, enqueued_at, attempts)
                SELECT id, %(now)s, 0 FROM inserted
                RETURNING event_id
                """,
                {"source": source.id, "channel": source.channel, "now": received_at, "rows": rows},
            )
            return [row[0] for row in cursor.fetchall()]
