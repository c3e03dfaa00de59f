"""Validation at ingestion: each message against the active version of the schema that covers it.

Batch-shaped and cheap on the hot path. The registry (active versions and the sources' policies)
is held per process as a snapshot; a source whose policy is `allow` costs one dict lookup. The
snapshot is checked against a stamp read from the database (row counts and latest `updated_at`
of sources, schemas and versions: three aggregate queries on small tables) at most every
SCHEMAS_REFRESH_SECONDS, and dropped at once in the process that publishes. A database stamp
rather than a Redis one because it also sees changes made in the admin or a shell, and works in
embedded mode, where there is no Redis; the cost is that other processes see a publish within
SCHEMAS_REFRESH_SECONDS rather than at once. Compiled validators (the validator of record and
the fast check of `fastpath`) are kept per (schema, version): a version's document cannot change
once published, so they never go stale.
"""

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Max
from jsonschema import Draft202012Validator

from profiles.contracts import SourceInfo
from profiles.messages import Message
from profiles.models import (
    EventSchema,
    EventSchemaVersion,
    QuarantinedMessage,
    SchemaPolicy,
    SchemaStatus,
    Source,
)
from profiles.schemas.fastpath import Check, compile_check

DEFAULT_REFRESH_SECONDS = 5.0
# A snapshot is reloaded at least this often even when the stamp did not move, for writes that
# bypass updated_at (QuerySet.update()).
MAX_SNAPSHOT_AGE_SECONDS = 60.0
MAX_VIOLATIONS = 20
SCHEMA_STAGE = "schema"
SCHEMA_REASON = "schema_violation"
VALIDATED_TYPES = frozenset({"track", "identify", "page", "screen"})

SchemaKey = tuple[str, str, UUID | None]


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    schema_id: UUID
    version_id: int
    version: str
    event_type: str
    event_name: str
    document: Any

    @property
    def label(self) -> str:
        return f"{self.event_type} {self.event_name!r}" if self.event_name else self.event_type


@dataclass(frozen=True, slots=True)
class Verdict:
    """What validating one message found. `version_id` is None when nothing was validated."""

    version_id: int | None = None
    version: str | None = None
    schema_id: UUID | None = None
    violations: list[dict[str, str]] = field(default_factory=list)
    quarantine: bool = False
    label: str = ""

    def detail(self) -> str:
        errors = "; ".join(f"{v['path'] or '/'}: {v['message']}" for v in self.violations)
        return f"{self.label} {self.version}: {errors}"


NOT_VALIDATED = Verdict()


@dataclass(slots=True)
class SchemaCheck:
    """A batch split by the schema check. `accepted` goes on to be stored, with `version_ids`
    and `violations` aligned with it; `rejected` holds (position in the input, detail) and
    `quarantine` the unsaved quarantine rows of the messages an `enforce` policy refused."""

    accepted: list[Message]
    version_ids: list[int | None]
    violations: list[list[dict[str, str]]]
    rejected: list[tuple[int, str]]
    quarantine: list[QuarantinedMessage]


@dataclass(frozen=True, slots=True)
class _Compiled:
    validator: Draft202012Validator
    fast: Check | None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    stamp: tuple[Any, ...]
    loaded_at: float
    policies: dict[UUID, str]
    active: dict[SchemaKey, ActiveVersion]


_lock = threading.Lock()
_snapshot: _Snapshot | None = None
_checked_at = 0.0
_validators: dict[tuple[UUID, str], "_Compiled"] = {}


def schemas_validate(*, source: SourceInfo, messages: Sequence[Message]) -> list[Verdict]:
    """One verdict per message, in order, under the source's policy; no query unless the
    snapshot is due for its stamp check."""
    snapshot = _current_snapshot()
    policy = snapshot.policies.get(source.id, SchemaPolicy.ALLOW)
    if policy == SchemaPolicy.ALLOW or not snapshot.active:
        return [NOT_VALIDATED] * len(messages)
    verdicts = []
    for message in messages:
        active = active_for(snapshot.active, source_id=source.id, event_type=message.type, event_name=message.name)
        if active is None:
            verdicts.append(NOT_VALIDATED)
            continue
        violations = violations_of(active, message.properties)
        verdicts.append(
            Verdict(
                version_id=active.version_id,
                version=active.version,
                schema_id=active.schema_id,
                violations=violations,
                quarantine=bool(violations) and policy == SchemaPolicy.ENFORCE,
                label=active.label,
            )
        )
    return verdicts


def schemas_check(*, source: SourceInfo, messages: Sequence[Message], received_at: datetime) -> SchemaCheck:
    """The hook for `event_ingest`: validate the batch and split it into what is stored and
    what is quarantined (stage "schema", reason "schema_violation")."""
    verdicts = schemas_validate(source=source, messages=messages)
    check = SchemaCheck(accepted=[], version_ids=[], violations=[], rejected=[], quarantine=[])
    for position, (message, verdict) in enumerate(zip(messages, verdicts, strict=True)):
        if verdict.quarantine:
            check.rejected.append((position, verdict.detail()))
            check.quarantine.append(
                schema_quarantined(source=source, message=message, verdict=verdict, received_at=received_at)
            )
            continue
        check.accepted.append(message)
        check.version_ids.append(verdict.version_id)
        check.violations.append(verdict.violations)
    return check


def schema_quarantined(
    *, source: SourceInfo, message: Message, verdict: Verdict, received_at: datetime
) -> QuarantinedMessage:
    """An unsaved quarantine row for a message its schema rejected. The message is kept as the
    Segment message it was parsed into, with its corrected timestamp made explicit, so a replay
    stores the same event whatever the batch around it was."""
    return QuarantinedMessage(
        source_id=source.id,
        received_at=received_at,
        stage=SCHEMA_STAGE,
        reason=SCHEMA_REASON,
        detail=verdict.detail(),
        message_id=message.message_id,
        raw=message_as_raw(message),
    )


def message_as_raw(message: Message) -> dict[str, Any]:
    raw: dict[str, Any] = {"type": message.type, "messageId": message.message_id}
    if message.user_id:
        raw["userId"] = message.user_id
    if message.anonymous_id:
        raw["anonymousId"] = message.anonymous_id
    if message.type == "track":
        raw["event"] = message.name
    elif message.type in ("page", "screen") and message.name:
        raw["name"] = message.name
    raw["traits" if message.type in ("identify", "group") else "properties"] = message.properties
    if message.context:
        raw["context"] = message.context
    raw["timestamp"] = message.timestamp.isoformat()
    if message.original_timestamp is not None:
        raw["originalTimestamp"] = message.original_timestamp.isoformat()
    if message.sent_at is not None:
        raw["sentAt"] = message.sent_at.isoformat()
    raw.update(message.extra)
    return raw


def active_for(
    active: dict[SchemaKey, ActiveVersion], *, source_id: UUID | None, event_type: str, event_name: str
) -> ActiveVersion | None:
    """The most specific active schema: this source's before the global one, and for pages and
    screens a named schema before the one for every name."""
    if event_type not in VALIDATED_TYPES:
        return None
    name = "" if event_type == "identify" else event_name
    names = (name, "") if event_type in ("page", "screen") and name else (name,)
    scopes = (source_id, None) if source_id is not None else (None,)
    for scope in scopes:
        for candidate in names:
            found = active.get((event_type, candidate, scope))
            if found is not None:
                return found
    return None


def violations_of(active: ActiveVersion, instance: Any) -> list[dict[str, str]]:
    """The errors, each with the JSON pointer of the offending value, at most MAX_VIOLATIONS.
    The compiled fast check answers first; the validator of record says what is wrong."""
    compiled = _compiled(active)
    if compiled.fast is not None and compiled.fast(instance):
        return []
    found = []
    for error in compiled.validator.iter_errors(instance):
        found.append(
            {
                "path": "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path),
                "keyword": str(error.validator),
                "message": error.message[:300],
            }
        )
        if len(found) >= MAX_VIOLATIONS:
            break
    return sorted(found, key=lambda v: (v["path"], v["keyword"]))


def schemas_cache_clear() -> None:
    """Forget the snapshot; the next validation reloads it. Called after a publish commits."""
    global _snapshot, _checked_at  # noqa: PLW0603 - the process-wide cache this module owns
    with _lock:
        _snapshot = None
        _checked_at = 0.0


def _compiled(active: ActiveVersion) -> "_Compiled":
    key = (active.schema_id, active.version)
    compiled = _validators.get(key)
    if compiled is None:
        compiled = _Compiled(validator=Draft202012Validator(active.document), fast=compile_check(active.document))
        with _lock:
            if len(_validators) > 10_000:
                _validators.clear()
            _validators[key] = compiled
    return compiled


def _refresh_seconds() -> float:
    return float(getattr(settings, "SCHEMAS_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS))


def _current_snapshot() -> _Snapshot:
    global _snapshot, _checked_at  # noqa: PLW0603 - the process-wide cache this module owns
    now = time.monotonic()
    snapshot = _snapshot
    if snapshot is not None and now - _checked_at < _refresh_seconds():
        return snapshot
    stamp = _stamp()
    if snapshot is None or snapshot.stamp != stamp or now - snapshot.loaded_at > MAX_SNAPSHOT_AGE_SECONDS:
        snapshot = _load(stamp, now)
    with _lock:
        _snapshot = snapshot
        _checked_at = now
    return snapshot


def _stamp() -> tuple[Any, ...]:
    parts: list[Any] = []
    for model in (Source, EventSchema, EventSchemaVersion):
        found = model.objects.aggregate(n=Count("pk"), at=Max("updated_at"))
        parts.extend((found["n"], found["at"]))
    return tuple(parts)


def _load(stamp: tuple[Any, ...], now: float) -> _Snapshot:
    policies = dict(Source.objects.exclude(schema_policy=SchemaPolicy.ALLOW).values_list("id", "schema_policy"))
    active = {}
    for version in EventSchemaVersion.objects.filter(status=SchemaStatus.ACTIVE).select_related("schema"):
        schema = version.schema
        active[(schema.event_type, schema.event_name, schema.source_id)] = ActiveVersion(
            schema_id=schema.id,
            version_id=version.id,
            version=version.version,
            event_type=schema.event_type,
            event_name=schema.event_name,
            document=version.document,
        )
    return _Snapshot(stamp=stamp, loaded_at=now, policies=policies, active=active)
