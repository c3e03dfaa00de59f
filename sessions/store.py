"""The SessionStore protocol and its two implementations, which one contract test suite
(tests/sessions/test_store_contract.py) runs against.

- DatabaseStore: the database is the store (no Redis, or SESSIONS_STORE=database), and the
  durable half of the other.
- RedisStore: every write goes to PostgreSQL first, through a DatabaseStore (the write is
  acknowledged only once it is committed there), and is then copied to Redis in one round trip:
  a hash per session holding the version and the JSON document, with a sliding TTL per channel
  kind, and a sorted set per customer indexing the active sessions. A read is one round trip; a
  miss (TTL elapsed, Redis restarted or flushed) reads PostgreSQL and puts the session back. The
  copy is written after commit with a "set if not older" script, so copies racing each other
  never move a session back to an older version.

A write whose copy can be neither refreshed nor dropped (Redis unreachable) leaves a stale copy
that would outlive the outage. It is recorded in PostgreSQL (StaleCopy) before the write is
acknowledged, and the write waits the lease SESSIONS_STALE_CHECK_MS first; every process reading
from Redis re-reads that list whenever its view is older than the lease, reads a listed session
(and its customer's active sessions) from PostgreSQL, and settles it once Redis answers again.
Why that is enough: docs/sessions.md, "Stale copies".

The database store's writes lock the row (SELECT ... FOR UPDATE), so versions are bumped one at
a time and a writer holding a stale version is refused with the current one (VersionMismatch);
the Redis store first tries one conditional UPDATE on the version it read, and takes the locked
path whenever that is refused.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from uuid import UUID

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from config.core import redis as tl_redis
from config.core.errors import ApplicationError
from sessions.concurrency import Expected, VersionMismatch, check_version
from sessions.documents import SessionDoc
from sessions.models import SessionRecord, StaleCopy

logger = logging.getLogger(__name__)

# A write callback returns the changed document (the store bumps the version and saves it) or
# None to leave the session as it is.
Mutation = Callable[[SessionDoc], SessionDoc | None]


class SessionNotFound(Exception):
    pass


class SessionStore(Protocol):
    """What services and selectors ask of the session state, whichever store holds it."""

    def create(self, doc: SessionDoc, *, origin: str = "api") -> SessionDoc:
        """Store a new session as given (its version is 1)."""
        ...

    def create_many(self, docs: list[SessionDoc], *, origin: str) -> list[SessionDoc]:
        """Store new sessions as given, in one statement."""
        ...

    def get(self, session_id: str) -> SessionDoc | None:
        """The session as last written, or None."""
        ...

    def update(
        self,
        session_id: str,
        mutate: Mutation,
        *,
        expected: Expected,
        guard: Callable[[SessionDoc], None] | None = None,
    ) -> SessionDoc:
        """Let `guard` refuse the caller (before anything about the session is revealed), check
        the expected version (VersionMismatch with the current one), apply `mutate` and save it
        with the version bumped; SessionNotFound when there is no such session."""
        ...

    def replace_many(self, docs: list[SessionDoc]) -> None:
        """Persist documents the caller built from rows it holds locked (versions already set)."""
        ...

    def touch_many(self, seen: dict[str, datetime]) -> list[SessionDoc]:
        """Move active sessions' last_seen_at forward, never back, without a new version;
        returns the sessions moved."""
        ...

    def list_active(self, customer_ids: Iterable[str]) -> list[SessionDoc]:
        """The customers' active sessions, most recently seen first."""
        ...


def inactivity_timeout(channel: str) -> timedelta:
    timeouts: dict[str, int] = settings.SESSIONS_INACTIVITY_SECONDS
    return timedelta(seconds=timeouts.get(channel, timeouts["default"]))


def to_doc(record: SessionRecord) -> SessionDoc:
    return SessionDoc(
        id=str(record.id),
        customer_id=str(record.customer_id),
        channel=record.channel,
        started_channel=record.started_channel,
        device=record.device,
        version=record.version,
        state=record.state,
        started_at=record.started_at,
        last_seen_at=record.last_seen_at,
        ended_at=record.ended_at,
        end_reason=record.end_reason,
        outcome=record.outcome,
        ended_channel=record.ended_channel,
        channels=tuple(record.channels),
        source_ids=tuple(record.source_ids),
        user_id=record.user_id,
        anonymous_id=record.anonymous_id,
    )


def _new_record(doc: SessionDoc, origin: str) -> SessionRecord:
    return SessionRecord(
        id=UUID(doc.id),
        customer_id=UUID(doc.customer_id),
        channel=doc.channel,
        started_channel=doc.started_channel,
        device=doc.device,
        source_ids=list(doc.source_ids),
        channels=list(doc.channels),
        user_id=doc.user_id,
        anonymous_id=doc.anonymous_id,
        origin=origin,
        state=doc.state,
        version=doc.version,
        started_at=doc.started_at,
        last_seen_at=doc.last_seen_at,
    )


def _fields(doc: SessionDoc) -> dict[str, Any]:
    """The record's columns a write may change, as the document has them."""
    return {
        "channel": doc.channel,
        "device": doc.device,
        "version": doc.version,
        "state": doc.state,
        "last_seen_at": doc.last_seen_at,
        "ended_at": doc.ended_at,
        "end_reason": doc.end_reason,
        "outcome": doc.outcome,
        "ended_channel": doc.ended_channel,
        "channels": list(doc.channels),
        "source_ids": list(doc.source_ids),
    }


def _apply(record: SessionRecord, doc: SessionDoc) -> list[str]:
    """Copy a document's fields onto its record; returns the fields that changed."""
    values = _fields(doc)
    changed = [name for name, value in values.items() if getattr(record, name) != value]
    for name in changed:
        setattr(record, name, values[name])
    return changed


class DatabaseStore:
    """Sessions in the database alone."""

    def create(self, doc: SessionDoc, *, origin: str = "api") -> SessionDoc:
        return self.create_many([doc], origin=origin)[0]

    def create_many(self, docs: list[SessionDoc], *, origin: str) -> list[SessionDoc]:
        records = SessionRecord.objects.bulk_create(_new_record(doc, origin) for doc in docs)
        return [to_doc(r) for r in records]

    def get(self, session_id: str) -> SessionDoc | None:
        record = SessionRecord.objects.filter(id=session_id).first()
        return to_doc(record) if record else None

    def update(
        self,
        session_id: str,
        mutate: Mutation,
        *,
        expected: Expected,
        guard: Callable[[SessionDoc], None] | None = None,
    ) -> SessionDoc:
        """Lock the session, let `guard` refuse the caller (before anything about the session
        is revealed), check the expected version, apply `mutate`, bump the version."""
        with transaction.atomic():
            record = SessionRecord.objects.select_for_update().filter(id=session_id).first()
            if record is None:
                raise SessionNotFound(session_id)
            current = to_doc(record)
            if guard is not None:
                guard(current)
            check_version(expected, current.version)
            changed = mutate(current)
            if changed is None:
                return current
            fields = _apply(record, changed.evolve(version=current.version + 1))
            record.save(update_fields=fields)
        return to_doc(record)

    def replace_many(self, docs: list[SessionDoc]) -> None:
        if not docs:
            return
        records = {str(r.id): r for r in SessionRecord.objects.filter(id__in=[d.id for d in docs])}
        changed: set[str] = set()
        for doc in docs:
            changed.update(_apply(records[doc.id], doc))
        if changed:
            SessionRecord.objects.bulk_update(list(records.values()), sorted(changed))

    def touch_many(self, seen: dict[str, datetime]) -> list[SessionDoc]:
        """Activity seen in events: no version bump, since the document a channel wrote is
        unchanged."""
        if not seen:
            return []
        with transaction.atomic():
            records = list(
                SessionRecord.objects.select_for_update().filter(id__in=list(seen), ended_at=None).order_by("id")
            )
            moved = [r for r in records if seen[str(r.id)] > r.last_seen_at]
            for record in moved:
                record.last_seen_at = seen[str(record.id)]
            if moved:
                SessionRecord.objects.bulk_update(moved, ["last_seen_at"])
        return [to_doc(r) for r in moved]

    def list_active(self, customer_ids: Iterable[str]) -> list[SessionDoc]:
        records = SessionRecord.objects.filter(customer_id__in=list(customer_ids), ended_at=None).order_by(
            "-last_seen_at"
        )
        return [to_doc(r) for r in records]

    def load_many(self, session_ids: Iterable[str]) -> list[SessionDoc]:
        """The sessions with these ids, active or not (the Redis store's misses)."""
        return [to_doc(r) for r in SessionRecord.objects.filter(id__in=list(session_ids))]


# --- Redis --------------------------------------------------------------------------------

# KEYS: session hash. Returns the document or false.
_READ = "return redis.call('HGET', KEYS[1], 'd')"

# KEYS: session hash, customer index. ARGV: version, document, TTL, index score (expiry),
# active (1/0), index TTL, session id. Writes only if not older than the stored version, so
# late or racing copies are dropped; the index is only maintained once it has been built
# from the database (its '*' member), so after a flush it is rebuilt whole, never partially.
_WRITE = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  if ARGV[5] == '1' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
  else
    redis.call('ZREM', KEYS[2], ARGV[7])
  end
end
return 1
"""

# KEYS: customer index. ARGV: now (epoch seconds), session key prefix.
# Returns false when the index is not built, else a flat list id, document-or-false, ...
_LIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= '*' then
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', ARGV[2] .. id, 'd')
  end
end
return out
"""


# KEYS: session hash, customer index. ARGV: version, document, TTL, or nothing when the session
# is gone from the database. Settles a stale copy: the customer's index is dropped (rebuilt whole
# from PostgreSQL by the next listing) and the copy replaced by the database's version unless
# Redis already has a newer one. Replaced rather than deleted: a read that missed Redis before
# the write and puts back what it read then is refused as older, where after a DEL it would
# put the stale version back.
_SETTLE = """
redis.call('DEL', KEYS[2])
if #ARGV == 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) > tonumber(ARGV[1]) then return 1 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class _Scripts:
    def __init__(self, client: redis.Redis):
        self.read = client.register_script(_READ)
        self.write = client.register_script(_WRITE)
        self.list = client.register_script(_LIST)
        self.settle = client.register_script(_SETTLE)


@dataclass(frozen=True)
class _Owed:
    """The stale copies a process knows of: session id -> (customer id, the debt's `since`, None
    while this process has not recorded it yet), and their customers."""

    sessions: Mapping[str, tuple[str, datetime | None]]
    customers: frozenset[str]

    @classmethod
    def of(cls, sessions: Mapping[str, tuple[str, datetime | None]]) -> "_Owed":
        return cls(sessions, frozenset(customer for customer, _ in sessions.values()))


class _StaleCopies:
    """This process's view of the StaleCopy table, re-read when older than the lease. Reads
    take the view as it is (an immutable snapshot); refreshes and changes are serialised."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view = _Owed.of({})
        self._read_at = -float("inf")  # time.monotonic() when the last re-read started

    def current(self) -> _Owed:
        """The view, re-read first if it is older than the lease. A re-read that fails raises:
        without it no Redis copy can be vouched for."""
        lease = settings.SESSIONS_STALE_CHECK_MS / 1000
        if time.monotonic() - self._read_at < lease:
            return self._view
        with self._lock:
            started = time.monotonic()
            if started - self._read_at < lease:
                return self._view
            # A fixed statement rather than a queryset built per call: it runs on the read path.
            with connection.cursor() as cursor:
                cursor.execute("SELECT session_id, customer_id, since FROM sessions_stalecopy")
                rows = cursor.fetchall()
            listed: dict[str, tuple[str, datetime | None]] = {str(s): (str(c), since) for s, c, since in rows}
            # Copies this process found stale but could not record yet stay until settled.
            unrecorded = {s: debt for s, debt in self._view.sessions.items() if debt[1] is None and s not in listed}
            self._view = _Owed.of({**listed, **unrecorded})
            self._read_at = started
            return self._view

    def add(self, debts: Mapping[str, tuple[str, datetime | None]]) -> None:
        with self._lock:
            self._view = _Owed.of({**self._view.sessions, **debts})

    def discard(self, debts: Mapping[str, tuple[str, datetime | None]]) -> None:
        """Forget settled debts, unless the view has a newer one for the session since."""
        with self._lock:
            kept = {s: d for s, d in self._view.sessions.items() if debts.get(s) != d}
            self._view = _Owed.of(kept)


_stale_copies = _StaleCopies()


@lru_cache(maxsize=1)
def _scripts() -> _Scripts:
    return _Scripts(tl_redis.client())


class RedisStore:
    """Sessions in Redis, written through to the database: each write is the database store's,
    copied to Redis once it commits."""

    def __init__(self) -> None:
        self._database = DatabaseStore()

    def create(self, doc: SessionDoc, *, origin: str = "api") -> SessionDoc:
        return self.create_many([doc], origin=origin)[0]

    def create_many(self, docs: list[SessionDoc], *, origin: str) -> list[SessionDoc]:
        created = self._database.create_many(docs, origin=origin)
        self._after_commit(created)
        return created

    def get(self, session_id: str) -> SessionDoc | None:
        owed = _stale_copies.current().sessions.get(session_id)
        if owed is not None:
            doc = self._database.get(session_id)
            self._settle({session_id: owed}, {session_id: doc})
            return doc
        try:
            reply = tl_redis.run_script(_scripts().read, [tl_redis.Keys.session(session_id)], [])
        except redis.RedisError:
            # A Redis outage must not become a session outage.
            logger.warning("session read from Redis failed; reading the database", exc_info=True)
            return self._database.get(session_id)
        if reply:
            return SessionDoc.loads(reply)
        doc = self._database.get(session_id)
        if doc is not None:
            self._publish([doc], rehydrate=True)
        return doc

    def update(
        self,
        session_id: str,
        mutate: Mutation,
        *,
        expected: Expected,
        guard: Callable[[SessionDoc], None] | None = None,
    ) -> SessionDoc:
        """Optimistically: the session as Redis has it (one round trip), then one conditional
        UPDATE in PostgreSQL on that version, instead of lock, read, write. Whenever the copy
        could be wrong about the caller or the version (refused, stale, or the row moved on),
        the locked path of the database store decides."""
        current = self.get(session_id)
        if current is None:
            raise SessionNotFound(session_id)
        try:
            if guard is not None:
                guard(current)
            check_version(expected, current.version)
        except (ApplicationError, VersionMismatch):
            return self._locked_update(session_id, mutate, expected=expected, guard=guard, read=current)
        changed = mutate(current)
        if changed is None:
            return current
        saved = changed.evolve(version=current.version + 1)
        if _conditional_update(saved, current.version) != 1:
            return self._locked_update(session_id, mutate, expected=expected, guard=guard, read=current)
        self._after_commit([saved])
        return saved

    def _locked_update(
        self,
        session_id: str,
        mutate: Mutation,
        *,
        expected: Expected,
        guard: Callable[[SessionDoc], None] | None,
        read: SessionDoc,
    ) -> SessionDoc:
        """The database store's locked update, copied to Redis when it wrote. When it did not
        (refused, or nothing to change) and the locked row is newer than the copy `read`, the
        copy is behind PostgreSQL: it is refreshed, so that the GET following a 412 reads the
        version the 412 named."""
        wrote = False
        locked: SessionDoc | None = None

        def seen(doc: SessionDoc) -> None:
            nonlocal locked
            locked = doc
            if guard is not None:
                guard(doc)

        def tracked(doc: SessionDoc) -> SessionDoc | None:
            nonlocal wrote
            changed = mutate(doc)
            wrote = changed is not None
            return changed

        try:
            saved = self._database.update(session_id, tracked, expected=expected, guard=seen)
        finally:
            behind = locked
            if not wrote and behind is not None and behind.version > read.version:
                transaction.on_commit(lambda: self._publish([behind], rehydrate=True))
        if wrote:
            self._after_commit([saved])
        return saved

    def replace_many(self, docs: list[SessionDoc]) -> None:
        self._database.replace_many(docs)
        self._after_commit(docs)

    def touch_many(self, seen: dict[str, datetime]) -> list[SessionDoc]:
        docs = self._database.touch_many(seen)
        self._after_commit(docs)
        return docs

    def list_active(self, customer_ids: Iterable[str]) -> list[SessionDoc]:
        asked = list(customer_ids)
        owed = _stale_copies.current()
        stale = [c for c in asked if c in owed.customers]
        docs = self._list_active_from_redis([c for c in asked if c not in owed.customers])
        if stale:
            # A customer with a stale copy may have a stale index too (missing, keeping or
            # mis-scoring sessions): PostgreSQL answers for it.
            docs += self._database.list_active(stale)
            self._settle({s: debt for s, debt in owed.sessions.items() if debt[0] in stale}, {})
            docs.sort(key=lambda d: d.last_seen_at, reverse=True)
        return docs

    def _list_active_from_redis(self, ids: list[str]) -> list[SessionDoc]:
        if not ids:
            return []
        docs: list[SessionDoc] = []
        missing_customers: list[str] = []
        missing_sessions: list[str] = []
        now = time.time()
        try:
            for customer_id in ids:
                reply = _scripts().list(keys=[tl_redis.Keys.session_index(customer_id)], args=[now, _session_prefix()])
                if reply is None:
                    missing_customers.append(customer_id)
                    continue
                for session_id, raw in zip(reply[::2], reply[1::2], strict=True):
                    if raw:
                        doc = SessionDoc.loads(raw)
                        if doc.active:
                            docs.append(doc)
                    else:
                        missing_sessions.append(session_id.decode())
        except redis.RedisError:
            logger.warning("session index read from Redis failed; reading the database", exc_info=True)
            return self._database.list_active(ids)
        if missing_sessions:
            found = [d for d in self._database.load_many(missing_sessions) if d.active]
            self._publish(found, rehydrate=True)
            docs.extend(found)
        if missing_customers:
            rebuilt = self._database.list_active(missing_customers)
            self._rebuild_indexes(missing_customers, rebuilt)
            docs.extend(rebuilt)
        docs.sort(key=lambda d: d.last_seen_at, reverse=True)
        return docs

    def _forget(self, docs: Iterable[SessionDoc]) -> bool:
        """Drop the Redis copies (and their customers' indexes): the next read rebuilds them.
        Whether they are gone."""
        keys = [k for d in docs for k in (tl_redis.Keys.session(d.id), tl_redis.Keys.session_index(d.customer_id))]
        if keys:
            try:
                tl_redis.client().delete(*keys)
            except redis.RedisError:
                logger.error("could not drop stale session copies %s", keys, exc_info=True)
                return False
        return True

    def _settle(self, debts: Mapping[str, tuple[str, datetime | None]], known: Mapping[str, SessionDoc | None]) -> None:
        """Pay what stale copies are owed once Redis answers: each copy replaced by PostgreSQL's
        version (`known`, else read now) and its customer's index dropped, then its debt row
        deleted if no newer write has recorded it again since."""
        if not debts:
            return
        docs = dict(known)
        docs.update({d.id: d for d in self._database.load_many([s for s in debts if s not in known])})
        settled: dict[str, tuple[str, datetime | None]] = {}
        try:
            for session_id, debt in debts.items():
                doc = docs.get(session_id)
                keys = [tl_redis.Keys.session(session_id), tl_redis.Keys.session_index(debt[0])]
                args = [] if doc is None else [doc.version, doc.dumps(), _ttl(doc)]
                tl_redis.run_script(_scripts().settle, keys, args)
                settled[session_id] = debt
        except redis.RedisError:
            logger.warning("stale session copies not settled yet: Redis unreachable", exc_info=True)
        recorded = [Q(session_id=s, since=since) for s, (_, since) in settled.items() if since is not None]
        if recorded:
            condition = recorded[0]
            for other in recorded[1:]:
                condition |= other
            StaleCopy.objects.filter(condition).delete()
        _stale_copies.discard(settled)

    def _after_commit(self, docs: list[SessionDoc]) -> None:
        transaction.on_commit(lambda: self._publish(docs))

    def _publish(self, docs: list[SessionDoc], *, rehydrate: bool = False) -> None:
        if not docs:
            return
        try:
            if len(docs) == 1:
                tl_redis.run_script(_scripts().write, _write_keys(docs[0]), _write_args(docs[0]))
            else:
                _pipelined_writes(docs)
        except redis.RedisError:
            if rehydrate:
                logger.warning("could not put sessions back in Redis", exc_info=True)
                return
            # The write is committed in PostgreSQL; a copy that may now be stale must go, or
            # be known as stale before the write is acknowledged.
            logger.warning("session copy to Redis failed; dropping the copies", exc_info=True)
            if not self._forget(docs):
                copies_stale({d.id: d.customer_id for d in docs})

    def _rebuild_indexes(self, customer_ids: list[str], docs: list[SessionDoc]) -> None:
        by_customer: dict[str, list[SessionDoc]] = {c: [] for c in customer_ids}
        for doc in docs:
            by_customer.setdefault(doc.customer_id, []).append(doc)
        try:
            pipe = tl_redis.client().pipeline(transaction=True)
            for customer_id, sessions in by_customer.items():
                key = tl_redis.Keys.session_index(customer_id)
                members: dict[str, float] = {"*": float("inf")}
                members.update({d.id: _expiry_epoch(d) for d in sessions})
                pipe.delete(key)
                pipe.zadd(key, members)
                pipe.expire(key, _index_ttl())
            pipe.execute()
        except redis.RedisError:
            logger.warning("could not rebuild session indexes", exc_info=True)
            return
        self._publish(docs, rehydrate=True)


# Every column a write may change, in one fixed statement: PostgreSQL plans it once per connection,
# and it skips the ORM's per-call query building, which was a large share of a PATCH's CPU.
_CONDITIONAL_UPDATE = (
    "UPDATE orchestration_session SET channel = %s, device = %s, version = %s, state = %s::jsonb, "
    "last_seen_at = %s, ended_at = %s, end_reason = %s, outcome = %s, ended_channel = %s, "
    "channels = %s::jsonb, source_ids = %s::jsonb WHERE id = %s AND version = %s"
)


def copies_stale(sessions: Mapping[str, str]) -> None:
    """Redis copies (session id -> customer id) that could be neither refreshed nor dropped:
    record them as stale (this process reads them from PostgreSQL at once, every other within a
    lease), then wait the lease, so that no read starting after the write (or erase) that left
    them is acknowledged can be served one of them."""
    _stale_copies.add({s: (c, None) for s, c in sessions.items()})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sessions_stalecopy (session_id, customer_id, since) "
            "SELECT s, c, clock_timestamp() FROM unnest(%s::uuid[], %s::uuid[]) AS t(s, c) "
            "ON CONFLICT (session_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, since = EXCLUDED.since "
            "RETURNING session_id, customer_id, since",
            [[UUID(s) for s in sessions], [UUID(c) for c in sessions.values()]],
        )
        recorded = {str(s): (str(c), since) for s, c, since in cursor.fetchall()}
    _stale_copies.add(recorded)
    logger.error("session copies in Redis left stale, recorded in PostgreSQL: %s", sorted(recorded))
    time.sleep(settings.SESSIONS_STALE_CHECK_MS / 1000)


def _conditional_update(doc: SessionDoc, expected_version: int) -> int:
    """Write the document's columns if the row is still at `expected_version`; rows written."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CONDITIONAL_UPDATE,
            [
                doc.channel,
                doc.device,
                doc.version,
                orjson.dumps(doc.state).decode(),
                doc.last_seen_at,
                doc.ended_at,
                doc.end_reason,
                doc.outcome,
                doc.ended_channel,
                orjson.dumps(list(doc.channels)).decode(),
                orjson.dumps(list(doc.source_ids)).decode(),
                UUID(doc.id),
                expected_version,
            ],
        )
        return cursor.rowcount


def _pipelined_writes(docs: list[SessionDoc]) -> None:
    script = _scripts().write
    client = tl_redis.client()
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        for doc in docs:
            pipe.evalsha(script.sha, 2, *_write_keys(doc), *_write_args(doc))
        try:
            pipe.execute()
            return
        except redis.exceptions.NoScriptError:
            if attempt:
                raise
            client.script_load(_WRITE)


def _write_keys(doc: SessionDoc) -> list[str]:
    return [tl_redis.Keys.session(doc.id), tl_redis.Keys.session_index(doc.customer_id)]


def _write_args(doc: SessionDoc) -> list[Any]:
    ttl = _ttl(doc)
    return [
        doc.version,
        doc.dumps(),
        ttl,
        _expiry_epoch(doc),
        1 if doc.active else 0,
        _index_ttl(),
        doc.id,
    ]


def _ttl(doc: SessionDoc) -> int:
    """Active: the channel's inactivity timeout plus a grace period, sliding with each write.
    Ended: kept briefly for channels that read the outcome."""
    if not doc.active:
        return settings.SESSIONS_ENDED_TTL_SECONDS
    return int(inactivity_timeout(doc.channel).total_seconds()) + settings.SESSIONS_REDIS_GRACE_SECONDS


def _expiry_epoch(doc: SessionDoc) -> float:
    return doc.last_seen_at.timestamp() + _ttl(doc)


def _index_ttl() -> int:
    timeouts: dict[str, int] = settings.SESSIONS_INACTIVITY_SECONDS
    return max(timeouts.values()) + settings.SESSIONS_REDIS_GRACE_SECONDS


def _session_prefix() -> str:
    return tl_redis.Keys.session("")


@lru_cache(maxsize=1)
def _redis_store() -> RedisStore:
    return RedisStore()


@lru_cache(maxsize=1)
def _database_store() -> DatabaseStore:
    return DatabaseStore()


def session_store() -> SessionStore:
    """The store for this process: Redis when REDIS_URL is set, else the database."""
    if settings.SESSIONS_STORE == "database" or not tl_redis.is_configured():
        return _database_store()
    return _redis_store()
