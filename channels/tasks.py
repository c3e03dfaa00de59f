from uuid import UUID

from celery import Task, shared_task
from django.conf import settings

from channels.feeds import feeds_poll_due
from channels.services import deliveries_stuck_sweep, delivery_attempt


@shared_task(name="channels.send_delivery", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def send_delivery(self: Task, delivery_id: str) -> str:
    """Idempotent: the claim inside delivery_attempt makes a redelivered task a no-op."""
    result = delivery_attempt(delivery_id=UUID(delivery_id))
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.status


@shared_task(name="channels.sweep_stuck_deliveries", acks_late=True, reject_on_worker_lost=True)
def sweep_stuck_deliveries() -> dict[str, int]:
    """Periodic (beat, maintenance queue): deliveries left "sending" by a dead worker."""
    result = deliveries_stuck_sweep(older_than=settings.CHANNELS_STUCK_AFTER_SECONDS)
    return {"requeued": len(result.requeued), "dead": len(result.dead)}


@shared_task(name="channels.poll_feeds", acks_late=True, reject_on_worker_lost=True)
def poll_feeds() -> int:
    """Periodic (beat, maintenance queue): poll the legacy feeds that are due. Idempotent: the
    records' ids deduplicate a page fetched twice, and a feed is taken by one worker at a time."""
    return len(feeds_poll_due())
