"""What the sends came to, written: final statuses with their outcome events, retries and
parked deliveries back to queued."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, UndeliverableAddress
from channels.retry import AddressRejected, BreakersOpen, PermanentError, TransientError, backoff_seconds
from channels.services.claims import Claim, breaker_delay
from channels.services.outcomes import OUTCOME_EVENTS, outcome_event, outcomes_emit
from channels.services.reports import early_reports_apply
from channels.services.sending import SendOutcome
from config.core import metrics, observability


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: str
    retry_in: float | None = None


_TABLE = Delivery._meta.db_table


def record(outcomes: list[SendOutcome]) -> dict[UUID, AttemptResult]:
    """Write what the sends came to: final statuses and their outcome events in one transaction
    (no outcome without its event), the retried and the parked back to queued."""
    now = timezone.now()
    results: dict[UUID, AttemptResult] = {}
    finals: list[tuple[Claim, str, str]] = []  # claim, status, reason
    requeue: list[tuple[Claim, int, str]] = []  # claim, attempts to give back, reason
    retrying: list[str] = []
    for outcome in outcomes:
        final, back, result, retried = _decide(outcome, now)
        results[outcome[0].delivery.id] = result
        if final is not None:
            finals.append(final)
        if back is not None:
            requeue.append(back)
        if retried:
            retrying.append(outcome[0].delivery.channel)
    if requeue:
        _write(
            [
                _Row(claim.delivery, DeliveryStatus.QUEUED, reason, given_back=back, finished=False)
                for claim, back, reason in requeue
            ],
            now,
        )
    for channel in retrying:
        metrics.DELIVERIES.labels(channel=channel, provider="", status="retrying").inc()
    if finals:
        _finish_many(finals, now)
    return results


@dataclass(frozen=True, slots=True)
class _Row:
    delivery: Delivery
    status: str
    error: str
    given_back: int = 0
    finished: bool = True


# One statement of one shape whatever the number of rows (arrays, not a VALUES list), so the
# driver parses it once per process.
_WRITE_SQL = (
    f"UPDATE {_TABLE} AS d SET status = v.status, attempts = d.attempts - v.given_back, "  # noqa: S608
    "last_error = v.last_error, address = v.address, provider = v.provider, "
    "provider_message_id = v.provider_message_id, sent_at = v.sent_at, finished_at = v.finished_at, "
    "updated_at = %s FROM unnest(%s::uuid[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::timestamptz[], %s::timestamptz[]) AS v(id, status, given_back, last_error, address, provider, "
    "provider_message_id, sent_at, finished_at) WHERE d.id = v.id AND d.status = 'sending' RETURNING d.id"
)


def _write(rows: list[_Row], now: datetime) -> set[UUID]:
    """Move claimed deliveries on in one statement; only those still "sending" (ours) change.
    Returns the ids written."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for row in rows:
        delivery = row.delivery
        if row.finished:
            delivery.status = row.status
            delivery.last_error = row.error[:2000]
            delivery.finished_at = now
            if row.status == DeliveryStatus.SENT:
                delivery.sent_at = now
        values = (
            delivery.id,
            row.status,
            row.given_back,
            row.error[:2000],
            delivery.address[:512],
            delivery.provider,
            delivery.provider_message_id,
            delivery.sent_at,
            delivery.finished_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(_WRITE_SQL, [now, *columns])
        return {row[0] for row in cursor.fetchall()}


def _finish_many(finals: list[tuple[Claim, str, str]], now: datetime) -> None:
    """The final statuses and their outcome events commit together: no outcome without its event,
    one ingestion call for the whole wave."""
    with transaction.atomic():
        written = _write([_Row(claim.delivery, status, reason) for claim, status, reason in finals], now)
        outcomes_emit(
            [
                outcome_event(delivery=claim.delivery, status=status, reason=reason, at=now)
                for claim, status, reason in finals
                if claim.delivery.id in written and status in OUTCOME_EVENTS
            ],
            received_at=now,
        )
    early_reports_apply(
        [
            claim.delivery
            for claim, status, _ in finals
            if status == DeliveryStatus.SENT and claim.delivery.id in written
        ]
    )
    for claim, status, _ in finals:
        delivery = claim.delivery
        metrics.DELIVERIES.labels(channel=delivery.channel, provider=delivery.provider, status=status).inc()
    if len(finals) == 1:
        delivery, status = finals[0][0].delivery, finals[0][1]
        observability.annotate(
            delivery_id=str(delivery.id), customer_id=str(delivery.customer_id), channel=delivery.channel, status=status
        )


def finish(delivery: Delivery, status: str, *, error: str = "") -> None:
    """One delivery's final status and its outcome event (the sweeper's dead ones)."""
    _finish_many([(Claim(delivery, ""), status, error)], timezone.now())


def _decide(
    outcome: SendOutcome, now: datetime
) -> tuple[tuple[Claim, str, str] | None, tuple[Claim, int, str] | None, AttemptResult, bool]:
    """What one send came to: (final status, or None), (back to queued, or None), the attempt's
    result, and whether it is a retry."""
    claim, status, message_id, error = outcome
    delivery = claim.delivery
    final: tuple[Claim, str, str] | None = None
    back: tuple[Claim, int, str] | None = None
    retried = False
    if status == DeliveryStatus.SENT:
        delivery.provider_message_id = message_id
        final = (claim, DeliveryStatus.SENT, "")
        result = AttemptResult(status=DeliveryStatus.SENT)
    elif status == DeliveryStatus.SKIPPED:
        final = (claim, DeliveryStatus.SKIPPED, claim.skip_reason)
        result = AttemptResult(status=DeliveryStatus.SKIPPED)
    elif isinstance(error, PermanentError):
        if isinstance(error, AddressRejected) and delivery.address:
            UndeliverableAddress.objects.update_or_create(
                channel=delivery.channel, address=delivery.address[:512], defaults={"reason": error.reason[:2000]}
            )
        final = (claim, DeliveryStatus.FAILED, error.reason)
        result = AttemptResult(status=DeliveryStatus.FAILED)
    elif isinstance(error, BreakersOpen):
        # Refused by open breakers, nothing was sent: the attempt does not count and the
        # delivery waits for the half-open trial (dead after CHANNELS_MAX_DEFER_SECONDS since
        # it was queued). The address is kept so the next try sees the breakers are still
        # open before claiming.
        waited = (now - delivery.queued_at).total_seconds()
        if waited > settings.CHANNELS_MAX_DEFER_SECONDS:
            final = (claim, DeliveryStatus.DEAD, f"providers unavailable for {int(waited)}s: {error.reason}")
            result = AttemptResult(status=DeliveryStatus.DEAD)
        else:
            back = (claim, 1, error.reason)
            result = AttemptResult(DeliveryStatus.QUEUED, retry_in=breaker_delay(error.wait))
    elif isinstance(error, TransientError):
        if delivery.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
            reason = f"gave up after {delivery.attempts} attempts: {error.reason}"
            final = (claim, DeliveryStatus.DEAD, reason)
            result = AttemptResult(status=DeliveryStatus.DEAD)
        else:
            # A non-empty last_error also marks it as tried: only its retry task takes it.
            back = (claim, 0, error.reason or "transient failure")
            retried = True
            delay = backoff_seconds(
                delivery.attempts,
                base=settings.CHANNELS_RETRY_BASE_SECONDS,
                cap=settings.CHANNELS_RETRY_MAX_SECONDS,
                retry_after=error.retry_after,
            )
            result = AttemptResult(status=DeliveryStatus.QUEUED, retry_in=delay)
    else:
        raise AssertionError(f"unexpected send outcome: {error!r}")
    return final, back, result, retried
