"""Periodic session upkeep. Named, primitive arguments, idempotent (ending skips what another
worker holds and what is already ended): acks_late + reject_on_worker_lost."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from sessions.services import sessions_end_inactive

# Periodic tasks log a line only when they did something (config.core.logs.PeriodicTaskFilter
# drops Celery's own lines about them).
logger = logging.getLogger(__name__)


# The name it had under orchestration: a task's name is what the broker's queued messages and
# the beat schedule carry, so a new name would leave the tasks queued during a deploy unknown.
@shared_task(
    name="orchestration.end_inactive_sessions",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    max_retries=5,
)
def end_inactive_sessions(limit: int = 1000) -> int:
    """End sessions idle past their channel's timeout; returns how many."""
    ended = sessions_end_inactive(now=timezone.now(), limit=limit)
    if ended:
        logger.info("ended %d inactive sessions", ended)
    return ended
