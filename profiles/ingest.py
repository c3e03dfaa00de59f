"""The ingestion service: every channel's messages enter the profile store through here.

One transaction per call, batch-shaped throughout: identities for the whole batch are resolved
in one query, events and their routing outbox rows go in with one statement, and rejected
messages go to the quarantine. Nothing here runs a query per message.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import structlog
from django.conf import settings
from django.db import connection, transaction

from config.core import metrics, observability
from config.core.transactions import atomic_retrying
from profiles import contracts
from profiles.contracts import SourceInfo
from profiles.identity_rules import is_junk
from profiles.ingest_store import IdentityConflict, IngestResult, IngestStore, Rejection
from profiles.merging import identity_limits
from profiles.messages import Message, MessageError, check_values, json_text, parse_message, storable
from profiles.models import QuarantinedMessage
from profiles.privacy.selectors import suppressed_identities, suppression_may_apply
from profiles.resolution import customers_resolve
from profiles.schemas.validation import SCHEMA_REASON, schemas_check

MAX_RESOLVE_ATTEMPTS = 5
# Reasons of messages whose values PostgreSQL cannot store as they came (profiles/messages.py).
UNSTORABLE = frozenset({"invalid_string", "invalid_number", "too_deep"})

log = structlog.get_logger(__name__)


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
    messages, quarantine, positions = _parse(
        source,
        raw_messages,
        result,
        call_type=call_type,
        received_at=received_at,
        defaults=defaults,
        check_size=check_size,
    )
    messages = _without_suppressed(messages, result)
    if messages:
        messages = _schema_checked(source, messages, positions, result, quarantine, received_at=received_at)

    store = IngestStore()
    if _one_statement_will_do(messages, quarantine):
        stored = store.ingest_simple(source, messages, received_at=received_at, parsed=result)
        if stored is not None:
            _observe(source, messages, quarantine, stored)
            return stored
    stored = atomic_retrying(
        lambda: _store(store, source, messages, quarantine, received_at=received_at, parsed=result),
        what="an ingest call",
    )
    _observe(source, messages, quarantine, stored)
    return stored


def _parse(
    source: SourceInfo,
    raw_messages: Sequence[object],
    result: IngestResult,
    *,
    call_type: str | None,
    received_at: datetime,
    defaults: dict[str, Any] | None,
    check_size: bool,
) -> tuple[list[Message], list[QuarantinedMessage], dict[int, int]]:
    """The messages that parse, first of each messageId, with each one's index in the call; the
    others quarantined (and counted in `result`)."""
    messages: list[Message] = []
    quarantine: list[QuarantinedMessage] = []
    seen: set[str] = set()
    positions: dict[int, int] = {}
    for index, raw in enumerate(raw_messages):
        try:
            # Parsed first: it refuses what PostgreSQL could not store, and measures the rest.
            message = parse_message(
                raw,
                call_type=call_type,
                received_at=received_at,
                defaults=defaults,
                external_kinds=source.identity_kinds,
                phone_region=settings.DEFAULT_PHONE_REGION,
            )
            size = message.size if message.size is not None else len(orjson.dumps(raw))
            if check_size and size > settings.INGEST_MAX_MESSAGE_BYTES:
                raise MessageError(
                    "message_too_large", f"message is over the {settings.INGEST_MAX_MESSAGE_BYTES // 1024} KB limit"
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
    return messages, quarantine, positions


def _schema_checked(
    source: SourceInfo,
    messages: list[Message],
    positions: dict[int, int],
    result: IngestResult,
    quarantine: list[QuarantinedMessage],
    *,
    received_at: datetime,
) -> list[Message]:
    """The messages the source's schema policy accepts, tagged with their schema version and
    violations; the refused ones quarantined (and counted in `result`)."""
    check = schemas_check(source=source, messages=messages, received_at=received_at)
    for position, detail in check.rejected:
        index = positions[id(messages[position])]
        result.rejected.append(Rejection(index=index, code=SCHEMA_REASON, detail=detail))
    quarantine.extend(check.quarantine)
    for message, version_id, violations in zip(check.accepted, check.version_ids, check.violations, strict=True):
        message.schema_version_id = version_id
        message.schema_violations = violations
    return check.accepted


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
    store: IngestStore,
    source: SourceInfo,
    messages: list[Message],
    quarantine: list[QuarantinedMessage],
    *,
    received_at: datetime,
    parsed: IngestResult,
) -> IngestResult:
    result = IngestResult(duplicates=parsed.duplicates, rejected=parsed.rejected, suppressed=parsed.suppressed)
    # Its transaction is atomic_retrying's (event_ingest), run again on a deadlock.
    if messages:
        for attempt in range(MAX_RESOLVE_ATTEMPTS):
            try:
                customers_resolve(store, source, messages, received_at)
                break
            except IdentityConflict:
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


def _without_suppressed(messages: list[Message], result: IngestResult) -> list[Message]:
    """Drop the messages of people erased with suppression: nothing of theirs is stored again.

    Until the first such erasure, ingestion makes no query for it but one every
    SUPPRESSION_CHECK_SECONDS (suppression_may_apply); from then on every batch is checked in
    one query."""
    if not messages or not suppression_may_apply():
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
    # PostgreSQL's text holds no NUL: kept as its escape, so the text still says it was there.
    row.raw_text = raw_text.replace("\x00", "\\u0000")
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
    """An unsaved quarantine row, with what a replay needs to store the message as it came.

    A message PostgreSQL cannot hold as it came (UNSTORABLE) is kept twice: `raw_text` is its
    exact JSON text (NUL and lone surrogates as \\u escapes), `raw` the JSON with those replaced
    (U+FFFD; null for a number out of range), which a replay would store. One nested too deep to
    be kept as JSON has its text alone, and is not replayed."""
    message_id = ""
    if isinstance(raw, dict) and isinstance(raw.get("messageId"), str):
        message_id = storable(raw["messageId"])[:200]
    raw_text = ""
    unstorable = error.code if error.code in UNSTORABLE else None
    if isinstance(raw, list) and unstorable is None:
        # Not a message at all, so its values were never checked.
        try:
            check_values({"": raw})
        except MessageError as found:
            unstorable = found.code
    if unstorable is not None and isinstance(raw, dict | list):
        raw_text = json_text(raw)
        raw = None if unstorable == "too_deep" else storable(raw)
    elif not isinstance(raw, dict | list):
        raw_text = repr(raw)[:10_000]
    return QuarantinedMessage(
        source_id=source.id if source else None,
        received_at=received_at,
        stage="ingest",
        reason=error.code,
        detail=error.detail,
        message_id=message_id,
        raw=raw if isinstance(raw, dict | list) else None,
        raw_text=raw_text,
        call_type=call_type or "",
        defaults=defaults or None,
    )
