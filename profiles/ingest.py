"""The ingestion service: every channel's messages enter the profile store through here.

One transaction per call, batch-shaped throughout: identities for the whole batch are resolved
in one query, events and their routing outbox rows go in with one statement, and rejected
messages go to the quarantine. Nothing here runs a query per message.
"""

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
import structlog
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction

from config.core import metrics, observability
from profiles import contracts, trait_ops
from profiles.contracts import SourceInfo
from profiles.identifiers import IdentityKey
from profiles.identity_rules import is_junk
from profiles.merging import MergeRequest, customers_merge, identity_limits
from profiles.messages import Message, MessageError, parse_message
from profiles.models import MergeRefusal, QuarantinedMessage
from profiles.privacy.selectors import suppressed_identities, suppression_in_force
from profiles.schemas.validation import SCHEMA_REASON, schemas_check

EXPLICIT_ALIAS_REASON = "explicit merge: an alias call joined previousId to userId"
MAX_RESOLVE_ATTEMPTS = 5
MAX_TRANSACTION_ATTEMPTS = 3
# Deadlock and serialization failures: two requests merging overlapping profiles.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

log = structlog.get_logger(__name__)


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


_TraitState = tuple[dict[str, Any], dict[str, str], list[str]]


class _IdentityConflict(Exception):
    """Another transaction claimed an identity this batch meant to create: resolve again."""


def event_ingest(
    *,
    source: SourceInfo,
    raw_messages: Sequence[object],
    call_type: str | None,
    received_at: datetime,
    defaults: dict[str, Any] | None = None,
    check_size: bool = True,
) -> IngestResult:
    """Store the valid messages as events (deduplicated per source on messageId), resolve them
    to customers, and quarantine the invalid ones; enqueues routing after commit."""
    result = IngestResult()
    messages: list[Message] = []
    quarantine: list[QuarantinedMessage] = []
    seen: set[str] = set()
    positions: dict[int, int] = {}
    for index, raw in enumerate(raw_messages):
        try:
            if check_size and len(orjson.dumps(raw)) > settings.INGEST_MAX_MESSAGE_BYTES:
                raise MessageError(
                    "message_too_large", f"message is over the {settings.INGEST_MAX_MESSAGE_BYTES // 1024} KB limit"
                )
            message = parse_message(
                raw,
                call_type=call_type,
                received_at=received_at,
                defaults=defaults,
                external_kinds=source.identity_kinds,
                phone_region=settings.DEFAULT_PHONE_REGION,
            )
            _drop_junk_identities(message)
        except MessageError as error:
            result.rejected.append(Rejection(index=index, code=error.code, detail=error.detail))
            quarantine.append(_quarantined(source, raw, error, received_at, call_type=call_type, defaults=defaults))
            continue
        if message.message_id in seen:
            result.duplicates += 1
            continue
        seen.add(message.message_id)
        messages.append(message)
        positions[id(message)] = index

    messages = _without_suppressed(messages, result)
    if messages:
        check = schemas_check(source=source, messages=messages, received_at=received_at)
        for position, detail in check.rejected:
            index = positions[id(messages[position])]
            result.rejected.append(Rejection(index=index, code=SCHEMA_REASON, detail=detail))
        quarantine.extend(check.quarantine)
        for message, version_id, violations in zip(check.accepted, check.version_ids, check.violations, strict=True):
            message.schema_version_id = version_id
            message.schema_violations = violations
        messages = check.accepted

    store = _Store()
    if _one_statement_will_do(messages, quarantine):
        stored = store.ingest_simple(source, messages, received_at=received_at, parsed=result)
        if stored is not None:
            _observe(source, messages, quarantine, stored)
            return stored
    attempts = 1 if connection.in_atomic_block else MAX_TRANSACTION_ATTEMPTS
    for attempt in range(attempts):
        try:
            stored = _store(store, source, messages, quarantine, received_at=received_at, parsed=result)
        except OperationalError as error:
            sqlstate = getattr(error.__cause__, "sqlstate", None)
            if sqlstate not in RETRYABLE_SQLSTATES or attempt == attempts - 1:
                raise
        else:
            _observe(source, messages, quarantine, stored)
            return stored
    raise AssertionError("unreachable")


def _one_statement_will_do(messages: list[Message], quarantine: list[QuarantinedMessage]) -> bool:
    """Whether the call can be stored by one statement in its own transaction: every message
    names exactly one identity and sets no traits (most track, page and screen calls), so no
    message can tie two profiles together or change one, and a new identity starts a profile
    of its own, within any limit of at least one. Inside a caller's transaction the statement
    could not fail alone, so that takes the general path."""
    if not messages or quarantine or connection.in_atomic_block:
        return False
    limits = identity_limits()
    return all(
        len(m.identities) == 1 and not m.traits and not m.previous_id and limits.get(m.identities[0][0], 1) >= 1
        for m in messages
    )


def _observe(
    source: SourceInfo, messages: list[Message], quarantine: list[QuarantinedMessage], result: IngestResult
) -> None:
    """Metrics once per call (counts, not a loop over events), the ids on the log context and
    the current span, and a log line per call that quarantined something."""
    name = source.name
    if result.accepted:
        metrics.EVENTS_ACCEPTED.labels(source=name).inc(result.accepted)
    if result.duplicates:
        metrics.EVENTS_DUPLICATE.labels(source=name).inc(result.duplicates)
    if result.suppressed:
        metrics.EVENTS_SUPPRESSED.labels(source=name).inc(result.suppressed)
    if len(messages) == 1:
        bound = structlog.contextvars.get_contextvars()
        # The request's own message only: not an event ingested on its behalf later (a session
        # started, a delivery outcome), nor inside a task, whose lines are about many events.
        if "request_id" in bound and "message_id" not in bound:
            structlog.contextvars.bind_contextvars(
                message_id=messages[0].message_id, customer_id=str(messages[0].customer_id)
            )
    if observability.enabled() and messages:
        observability.annotate(
            source=name,
            message_id=[m.message_id for m in messages],
            customer_id=list(dict.fromkeys(str(m.customer_id) for m in messages)),
        )
    if quarantine:
        reasons: dict[str, int] = {}
        for row in quarantine:
            reasons[row.reason] = reasons.get(row.reason, 0) + 1
        for reason, count in reasons.items():
            metrics.EVENTS_QUARANTINED.labels(source=name, reason=reason).inc(count)
        log.warning(
            "messages quarantined",
            source=name,
            reasons=reasons,
            first_detail=quarantine[0].detail[:500],
            message_ids=[row.message_id for row in quarantine[:20]],
        )


def _store(
    store: "_Store",
    source: SourceInfo,
    messages: list[Message],
    quarantine: list[QuarantinedMessage],
    *,
    received_at: datetime,
    parsed: IngestResult,
) -> IngestResult:
    result = IngestResult(duplicates=parsed.duplicates, rejected=parsed.rejected, suppressed=parsed.suppressed)
    with transaction.atomic():
        if messages:
            for attempt in range(MAX_RESOLVE_ATTEMPTS):
                try:
                    _resolve_customers(store, source, messages, received_at)
                    break
                except _IdentityConflict:
                    if attempt == MAX_RESOLVE_ATTEMPTS - 1:
                        raise
            result.event_ids = store.insert_events(source, messages, received_at)
            result.accepted = len(result.event_ids)
            result.duplicates += len(messages) - result.accepted
        if quarantine:
            QuarantinedMessage.objects.bulk_create(quarantine)
        if result.event_ids:
            event_ids = result.event_ids
            transaction.on_commit(lambda: contracts.notify_accepted(event_ids))
    return result


_suppression_checked_at = -1e9
_suppression_active = False


def _without_suppressed(messages: list[Message], result: IngestResult) -> list[Message]:
    """Drop the messages of people erased with suppression: nothing of theirs is stored again.

    Whether any suppressing tombstone exists is cached per process for
    SUPPRESSION_CHECK_SECONDS, so ingestion makes no query for it until the first such erasure;
    from then on every batch is checked in one query."""
    global _suppression_checked_at, _suppression_active  # noqa: PLW0603 - a per-process cache
    now = time.monotonic()
    if not _suppression_active and now - _suppression_checked_at >= settings.SUPPRESSION_CHECK_SECONDS:
        _suppression_active = suppression_in_force()
        _suppression_checked_at = now
    if not _suppression_active or not messages:
        return messages
    hit = suppressed_identities(key for m in messages for key in m.identities)
    if not hit:
        return messages
    kept = [m for m in messages if hit.isdisjoint(m.identities)]
    result.suppressed += len(messages) - len(kept)
    return kept


def _drop_junk_identities(message: Message) -> None:
    """Placeholder ids ('null', 'undefined', '0', ...) never find or join a profile."""
    message.identities = [key for key in message.identities if not is_junk(key[1])]
    if message.previous_id and is_junk(message.previous_id):
        message.previous_id = None
    if not message.identities:
        raise MessageError("junk_identity", "userId/anonymousId is a placeholder such as 'null' or '0'; send a real id")


def message_quarantine(
    *, source: SourceInfo | None, raw: object, raw_text: str = "", code: str, detail: str, received_at: datetime
) -> None:
    """Keep a message that was refused whole (it never reached event_ingest) with its reason."""
    row = _quarantined(source, raw, MessageError(code, detail), received_at)
    row.raw_text = raw_text
    row.save()
    metrics.EVENTS_QUARANTINED.labels(source=source.name if source else "unknown", reason=code).inc()


def _quarantined(
    source: SourceInfo | None,
    raw: object,
    error: MessageError,
    received_at: datetime,
    *,
    call_type: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> QuarantinedMessage:
    """An unsaved quarantine row, with what a replay needs to store the message as it came."""
    message_id = ""
    if isinstance(raw, dict) and isinstance(raw.get("messageId"), str):
        message_id = raw["messageId"][:200]
    return QuarantinedMessage(
        source_id=source.id if source else None,
        received_at=received_at,
        stage="ingest",
        reason=error.code,
        detail=error.detail,
        message_id=message_id,
        raw=raw if isinstance(raw, dict | list) else None,
        raw_text="" if isinstance(raw, dict | list) else repr(raw)[:10_000],
        call_type=call_type or "",
        defaults=defaults or None,
    )


def _lookup_keys(messages: list[Message]) -> set[IdentityKey]:
    keys: set[IdentityKey] = set()
    for message in messages:
        keys.update(message.identities)
        if message.previous_id:
            keys.add(("user_id", message.previous_id))
            keys.add(("anonymous_id", message.previous_id))
    return keys


def _resolve_customers(store: "_Store", source: SourceInfo, messages: list[Message], now: datetime) -> None:
    """Assign every message a customer, creating customers and identities as needed and merging
    the profiles a message shows to be one person.

    Messages are taken in order, so an anonymous page view followed by an identify in the same
    batch lands on one profile. A merge that identity rules refuse leaves the profiles apart,
    and the message goes to the owner of its strongest identity (user id first).
    """
    limits = identity_limits()
    wanted = _lookup_keys(messages)
    # The limited-kind identities (e.g. user ids) the known customers hold come with the lookup,
    # in the same round trip, when the batch carries such a kind at all.
    owners, held = store.lookup(wanted, sorted({kind for kind, _ in wanted if kind in limits}))
    refusals: list[MergeRefusal] = []
    new_customers: set[uuid.UUID] = set()
    new_identities: dict[IdentityKey, uuid.UUID] = {}
    ops: dict[uuid.UUID, trait_ops.TraitOps] = {}
    merges: list[tuple[list[uuid.UUID], Message]] = []

    for message in messages:
        keys = list(message.identities)
        if message.previous_id:
            previous = next(
                (
                    key
                    for key in (("user_id", message.previous_id), ("anonymous_id", message.previous_id))
                    if key in owners
                ),
                ("anonymous_id", message.previous_id),
            )
            keys.append(previous)
        known = list(dict.fromkeys(owners[key] for key in keys if key in owners))
        # alias is the caller's explicit instruction to join two identities (the Segment spec),
        # so the one-user-id limit, which guards against implicit joins, does not apply to it.
        if (
            len(known) == 1
            and message.type != "alias"
            and (problem := _over_limit(held, known[0], keys, owners, limits))
        ):
            # e.g. a second user id arriving on a shared device's profile: the person behind the
            # strong identity gets a profile of their own; the shared identity stays where it is.
            refusals.append(_refusal(source, message, known, problem))
            keys = [key for key in keys if key not in owners]
            known = []
        if known:
            customer_id = known[0]
            if len(known) > 1:
                merges.append((known, message))
        else:
            customer_id = uuid.uuid4()
            new_customers.add(customer_id)
        for key in keys:
            if key not in owners:
                owners[key] = customer_id
                new_identities[key] = customer_id
                if key[0] in limits:
                    held.setdefault(customer_id, {}).setdefault(key[0], set()).add(key[1])
        message.customer_id = customer_id
        if message.traits:
            message_ops = trait_ops.parse(message.traits)
            message_ops.set_at = message.timestamp.isoformat()
            ops[customer_id] = trait_ops.fold(ops[customer_id], message_ops) if customer_id in ops else message_ops

    customers = {cid: trait_ops.apply({}, {}, [], ops.pop(cid, trait_ops.TraitOps())) for cid in new_customers}
    if new_identities:
        # Only these inserts can collide with a concurrent request: a collision undoes them and
        # raises _IdentityConflict, so the caller resolves again; everything before it only read.
        store.insert_new(customers, new_identities, source, now)
    elif customers:
        store.insert_customers(customers, now)
    if refusals:
        MergeRefusal.objects.bulk_create(refusals)
    survivor_of = _merge(source, merges)
    if survivor_of:
        for message in messages:
            message.customer_id = _follow(survivor_of, message.customer_id)
        folded: dict[uuid.UUID, trait_ops.TraitOps] = {}
        for customer_id, customer_ops in ops.items():
            target = _follow(survivor_of, customer_id)
            folded[target] = trait_ops.fold(folded[target], customer_ops) if target in folded else customer_ops
        ops = folded
    if ops:
        store.merge_traits(ops, now)


def _over_limit(
    held: dict[uuid.UUID, dict[str, set[str]]],
    customer_id: uuid.UUID,
    keys: list[IdentityKey],
    owners: dict[IdentityKey, uuid.UUID],
    limits: dict[str, int],
) -> str:
    for kind, value in keys:
        if kind in limits and (kind, value) not in owners:
            values = held.get(customer_id, {}).get(kind, set()) | {value}
            if len(values) > limits[kind]:
                return f"the profile would hold {len(values)} {kind} identities; the limit is {limits[kind]}"
    return ""


def _refusal(source: SourceInfo, message: Message, customer_ids: list[uuid.UUID], reason: str) -> MergeRefusal:
    return MergeRefusal(
        customer_ids=[str(cid) for cid in customer_ids],
        reason=reason,
        actor="ingestion",
        trigger={"source": str(source.id), "message_id": message.message_id},
    )


def _merge(source: SourceInfo, merges: list[tuple[list[uuid.UUID], Message]]) -> dict[uuid.UUID, uuid.UUID]:
    """Merge every group of profiles a message tied together, in message order and all at once
    (one merge at a time cost a dozen statements each, the largest share of a batch's work);
    map merged ids to survivors."""
    if not merges:
        return {}
    outcomes = customers_merge(
        requests=[
            MergeRequest(
                customer_ids=customer_ids,
                reason=EXPLICIT_ALIAS_REASON
                if message.type == "alias"
                else f"identities seen together in one {message.type} call",
                trigger={"source": str(source.id), "message_id": message.message_id},
                explicit=message.type == "alias",
            )
            for customer_ids, message in merges
        ],
        actor="ingestion",
    )
    survivor_of: dict[uuid.UUID, uuid.UUID] = {}
    for outcome in outcomes:
        if outcome.survivor_id is not None:
            for merged_id in outcome.merged_ids:
                survivor_of[merged_id] = outcome.survivor_id
    return survivor_of


def _follow(survivor_of: dict[uuid.UUID, uuid.UUID], customer_id: uuid.UUID) -> uuid.UUID:
    seen = {customer_id}
    while customer_id in survivor_of and survivor_of[customer_id] not in seen:
        customer_id = survivor_of[customer_id]
        seen.add(customer_id)
    return customer_id


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_Held = dict[uuid.UUID, dict[str, set[str]]]


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


class _Store:
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

    def lookup(self, keys: set[IdentityKey], limited_kinds: list[str]) -> tuple[dict[IdentityKey, uuid.UUID], _Held]:
        if not keys:
            return {}, {}
        owners: dict[IdentityKey, uuid.UUID] = {}
        held: _Held = {}
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

    def insert_customers(self, customers: dict[uuid.UUID, _TraitState], now: datetime) -> None:
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
                raise _IdentityConflict

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
        customers: dict[uuid.UUID, _TraitState],
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
        raise _IdentityConflict

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
    _INGEST_SIMPLE = """
        WITH k AS MATERIALIZED (
            SELECT * FROM json_to_recordset(%(keys)s::json) AS k(kind text, value text)
        ), found AS MATERIALIZED (
            SELECT k.kind, k.value, l.customer_id FROM k CROSS JOIN LATERAL (
                SELECT COALESCE(c.merged_into_id, c.id) AS customer_id
                FROM profiles_identity i JOIN profiles_customer c ON c.id = i.customer_id
                WHERE i.kind = k.kind AND i.value = k.value LIMIT 1
            ) AS l
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
            SELECT kind, value, customer_id FROM found
            UNION ALL SELECT kind, value, customer_id FROM new_identities
        ), inserted AS (
            INSERT INTO profiles_event (
                source_id, message_id, type, name, customer_id, channel, user_id, anonymous_id,
                timestamp, original_timestamp, sent_at, received_at, properties, context, extra,
                schema_version_id, schema_violations
            )
            SELECT %(source)s, u.message_id, u.type, u.name, o.customer_id, %(channel)s, u.user_id, u.anonymous_id,
                   u.ts, u.original_ts, u.sent_at, %(now)s, u.properties, u.context, u.extra,
                   u.schema_version_id, u.schema_violations
            FROM json_to_recordset(%(rows)s::json) AS u(
                position int, message_id text, type text, name text, kind text, value text, user_id text,
                anonymous_id text, ts timestamptz, original_ts timestamptz, sent_at timestamptz,
                properties jsonb, context jsonb, extra jsonb, schema_version_id bigint, schema_violations jsonb
            ) JOIN owners o ON o.kind = u.kind AND o.value = u.value
            ORDER BY u.position
            ON CONFLICT (source_id, message_id) DO NOTHING
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
            if getattr(error.__cause__, "sqlstate", None) not in RETRYABLE_SQLSTATES:
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
                WITH inserted AS (
                    INSERT INTO profiles_event (
                        source_id, message_id, type, name, customer_id, channel, user_id, anonymous_id,
                        timestamp, original_timestamp, sent_at, received_at, properties, context, extra,
                        schema_version_id, schema_violations
                    )
                    SELECT %s, u.message_id, u.type, u.name, u.customer_id, %s, u.user_id, u.anonymous_id,
                           u.ts, u.original_ts, u.sent_at, %s, u.properties, u.context, u.extra,
                           u.schema_version_id, u.schema_violations
                    FROM json_to_recordset(%s::json) AS u(
                        message_id text, type text, name text, customer_id uuid, user_id text, anonymous_id text,
                        ts timestamptz, original_ts timestamptz, sent_at timestamptz,
                        properties jsonb, context jsonb, extra jsonb, schema_version_id bigint, schema_violations jsonb
                    )
                    ON CONFLICT (source_id, message_id) DO NOTHING
                    RETURNING id
                )
                INSERT INTO profiles_eventoutbox (event_id, enqueued_at, attempts)
                SELECT id, %s, 0 FROM inserted
                RETURNING event_id
                """,
                [source.id, source.channel, received_at, rows, received_at],
            )
            return [row[0] for row in cursor.fetchall()]
