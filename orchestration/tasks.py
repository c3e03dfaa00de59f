"""Celery tasks. Named, primitive arguments, idempotent: acks_late + reject_on_worker_lost."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from config.core import metrics
from orchestration import retention, routing
from orchestration.dispatch import send_chunks
from profiles import facade as profiles

TRANSIENT = (OperationalError, InterfaceError)

# Periodic tasks log a line only when they did something (config.core.logs.PeriodicTaskFilter
# drops Celery's own lines about them).
logger = logging.getLogger(__name__)


@shared_task(
    name="orchestration.route_events",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=1,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def route_events(event_ids: list[int], traces: dict[str, list[int]] | None = None) -> int:
    """Route these events if they are still on the outbox; a repeat is a no-op. `traces`
    ({traceparent: [event ids]}) continues each event's trace when tracing is on."""
    return routing.route([int(i) for i in event_ids], traces=traces)


@shared_task(name="orchestration.sweep_outbox", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT)
def sweep_outbox(older_than_seconds: int | None = None, limit: int = 50_000) -> int:
    """Re-enqueue events whose routing has not completed in time (broker down at commit,
    worker killed mid-task). Safe to run concurrently: stale rows are claimed with SKIP LOCKED."""
    seconds = settings.ROUTING_SWEEP_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    stale = profiles.outbox_reclaim_stale(older_than=timedelta(seconds=seconds), limit=limit)
    if stale:
        metrics.OUTBOX_SWEPT.inc(len(stale))
        send_chunks(stale)
        logger.info("re-enqueued %d events whose routing had not completed", len(stale))
    return len(stale)


@shared_task(
    name="orchestration.apply_retention",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    soft_time_limit=300,
    time_limit=360,
)
def apply_retention() -> dict[str, int]:
    """Create the time partitions ahead, drop the ones past their retention, trim the narrow
    tables in bounded batches (orchestration/retention.py). Idempotent: a second run finds
    nothing more to do; a run cut short leaves the rest to the next."""
    done = retention.retention_apply(now=timezone.now())
    if any(done.values()):
        logger.info("retention: %s", ", ".join(f"{name}={count}" for name, count in done.items() if count))
    return done
