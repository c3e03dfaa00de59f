import logging
import math
from collections.abc import Sequence
from uuid import UUID

from celery import Task, shared_task
from django.conf import settings

from channels.feeds import feeds_poll_due
from channels.services.attempts import deliveries_attempt
from channels.services.deliveries import send_pending_clear
from channels.services.sweeps import deliveries_queued_sweep, deliveries_stuck_sweep

# Periodic tasks log a line only when they did something (config.core.logs.PeriodicTaskFilter
# drops Celery's own lines about them).
logger = logging.getLogger(__name__)


@shared_task(name="channels.send_delivery", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def send_delivery(self: Task, delivery_id: str = "", retry: bool = False, group: Sequence[str] = ()) -> str:
    """Send one delivery (none for a task that only drains; `group`: several retried together),
    and with it up to CHANNELS_SEND_BATCH others never tried so far (their own tasks, if any,
    then find them taken). Idempotent: the claim makes a redelivered task a no-op. A task that
    `deliver` enqueued (retry=False) only takes a delivery never tried, so once a batch put it
    back for a retry, only its retry task, after the backoff, sends it again."""
    own = [UUID(delivery_id)] if delivery_id else []
    given = own + [UUID(other) for other in group]
    if not retry:
        send_pending_clear()
    results = deliveries_attempt(
        delivery_ids=given,
        fresh=max(0, settings.CHANNELS_SEND_BATCH - len(given)),
        only_fresh=not retry,
        on_full=_drain_more,
        on_parked=_drain_at_trial,
    )
    _retry_later({other: result.retry_in for other, result in results.items() if other not in own})
    mine = results.get(own[0]) if own else None
    if mine is not None and mine.retry_in is not None:
        raise self.retry(args=(delivery_id,), kwargs={"retry": True}, countdown=mine.retry_in)
    return mine.status if mine is not None else "drained"


def _drain_more() -> None:
    # A full batch: more never-tried deliveries may be waiting; another task takes the next
    # batch while this one sends.
    send_delivery.delay("")


def _drain_at_trial(seconds: float) -> None:
    # The claim left out never-tried deliveries to a destination whose breaker is open: a task
    # that drains when the breaker lets its trial through takes them again (the trial, then the
    # rest if it succeeded, or parked for a retry as any refused delivery if it failed).
    send_delivery.apply_async(("",), countdown=seconds + 0.05)


def _retry_later(delays: dict[UUID, float | None]) -> None:
    """One retry task per second of delay rather than one per delivery: the many deliveries a
    down provider parks at once come back together, each at most a second after its backoff."""
    by_second: dict[int, list[str]] = {}
    for delivery_id, delay in delays.items():
        if delay is not None:
            by_second.setdefault(math.ceil(delay), []).append(str(delivery_id))
    for seconds, ids in by_second.items():
        for start in range(0, len(ids), settings.CHANNELS_SEND_BATCH):
            send_delivery.apply_async(
                ("",), {"retry": True, "group": ids[start : start + settings.CHANNELS_SEND_BATCH]}, countdown=seconds
            )


@shared_task(name="channels.sweep_stuck_deliveries", acks_late=True, reject_on_worker_lost=True)
def sweep_stuck_deliveries() -> dict[str, int]:
    """Periodic (beat, maintenance queue): deliveries left "sending" by a dead worker, and
    deliveries left "queued" whose task was lost."""
    result = deliveries_stuck_sweep(older_than=settings.CHANNELS_STUCK_AFTER_SECONDS)
    lost = deliveries_queued_sweep(older_than=settings.CHANNELS_QUEUED_STALE_SECONDS)
    counts = {"requeued": len(result.requeued), "dead": len(result.dead), "enqueued": len(lost)}
    if any(counts.values()):
        logger.info(
            "stuck deliveries: %(requeued)d sent again, %(dead)d given up, %(enqueued)d queued ones enqueued again",
            counts,
        )
    return counts


@shared_task(name="channels.poll_feeds", acks_late=True, reject_on_worker_lost=True)
def poll_feeds() -> int:
    """Periodic (beat, maintenance queue): poll the legacy feeds that are due. Idempotent: the
    records' ids deduplicate a page fetched twice, and a feed is taken by one worker at a time."""
    polled = feeds_poll_due()
    accepted, rejected = sum(result.accepted for result in polled), sum(result.rejected for result in polled)
    failed = sum(1 for result in polled if result.error)
    if accepted or rejected or failed:
        logger.info(
            "polled %d feeds: %d records accepted, %d rejected, %d failed", len(polled), accepted, rejected, failed
        )
    return len(polled)
