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

The database store's writes lock the row (SELECT ... FOR UPDATE), so versions are bumped one at
a time and a writer holding a stale version is refused with the current one (VersionMismatch);
the Redis store first tries one conditional UPDATE on the version it read, and takes the locked
path whenever that is refused.
"""

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from uuid import UUID

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction

from config.core import redis as tl_redis
from config.core.errors import ApplicationError
from sessions.concurrency import Expected, VersionMismatch, check_version
from sessions.documents import SessionDoc
from sessions.models import SessionRecord

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


class _Scripts:
    def __init__(self, client: redis.Redis):
        self.read = client.register_script(_READ)
        self.write = client.register_script(_WRITE)
        self.list = client.register_script(_LIST)


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
            return self._locked_update(session_id, mutate, expected=expected, guard=guard)
        changed = mutate(current)
        if changed is None:
            return current
        saved = changed.evolve(version=current.version + 1)
        if _conditional_update(saved, current.version) != 1:
            return self._locked_update(session_id, mutate, expected=expected, guard=guard)
        self._after_commit([saved])
        return saved

    def _locked_update(
        self, session_id: str, mutate: Mutation, *, expected: Expected, guard: Callable[[SessionDoc], None] | None
    ) -> SessionDoc:
        """The database store's locked update, copied to Redis only when it wrote."""
        wrote = False

        def tracked(doc: SessionDoc) -> SessionDoc | None:
            nonlocal wrote
            changed = mutate(doc)
            wrote = changed is not None
            return changed

        saved = self._database.update(session_id, tracked, expected=expected, guard=guard)
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
        ids = list(customer_ids)
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

    def _forget(self, docs: Iterable[SessionDoc]) -> None:
        """Drop the Redis copies (and their customers' indexes): the next read rebuilds them."""
        keys = [k for d in docs for k in (tl_redis.Keys.session(d.id), tl_redis.Keys.session_index(d.customer_id))]
        if keys:
            try:
                tl_redis.client().delete(*keys)
            except redis.RedisError:
                logger.error("could not drop stale session copies %s", keys, exc_info=True)

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
            # The write is committed in PostgreSQL; a copy that may now be stale must go.
            logger.warning("session copy to Redis failed; dropping the copies", exc_info=True)
            self._forget(docs)

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
