"""Journeys' Celery tasks: the durable timer tick. Named, idempotent (timers are claimed FOR
UPDATE SKIP LOCKED and marked fired in the transaction that acts on them)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from journeys.segments import segments_recheck
from journeys.selectors import timers_next_due
from journeys.services import timers_tick

TRANSIENT = (OperationalError, InterfaceError)

# Periodic tasks log a line only when they did something (config.core.logs.PeriodicTaskFilter
# drops Celery's own lines about them).
logger = logging.getLogger(__name__)


@shared_task(
    name="journeys.tick_timers",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=1,
    retry_backoff_max=10,
    max_retries=3,
)
def tick_timers(helpers: int | None = None, ahead: bool = False) -> int:
    """Fire every timer due now. Beat runs it every JOURNEYS_TICK_INTERVAL_SECONDS (a
    quarter second); overlapping ticks share the work. When more are due than one batch (10,000
    falling due together), it enqueues `helpers` (JOURNEYS_TICK_HELPERS) more ticks, which do not
    spread further, so other worker processes take batches in parallel.

    A beat tick that finds a timer falling due before the next beat tick also enqueues one tick
    with that due time as its ETA (`ahead`, which schedules none itself), so a timer's lag does not
    include the wait for the next beat. The ETA only brings the firing forward: the timer is a
    row, and the next beat tick fires it whatever became of that task."""
    spread = settings.JOURNEYS_TICK_HELPERS if helpers is None else helpers

    def backlog() -> None:
        for _ in range(spread):
            tick_timers.apply_async(kwargs={"helpers": 0})

    fired = timers_tick(on_backlog=backlog if spread > 0 else None)
    if helpers is None and not ahead:
        now = timezone.now()
        soon = timers_next_due(after=now, until=now + timedelta(seconds=settings.JOURNEYS_TICK_INTERVAL_SECONDS))
        if soon is not None:
            tick_timers.apply_async(kwargs={"ahead": True}, eta=soon, expires=soon + timedelta(seconds=10))
    if fired:
        logger.info("fired %d journey timers", fired)
    return fired


@shared_task(
    name="journeys.recheck_segments",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=3,
)
def recheck_segments() -> int:
    """Re-evaluate the members of time-based segments (now.*, within_last, performed windows),
    whose membership changes as time passes without an event. Idempotent: a change is made (and
    its event emitted) only by the statement that changes the membership row."""
    changed = segments_recheck()
    if changed:
        logger.info("segment recheck changed %d memberships", changed)
    return changed
