"""Retention of deliveries: finished ones past RETENTION_DELIVERIES_DAYS, deleted in batches
(docs/operations.md, "Retention"). Not partitioned: the unique idempotency key could not span
partitions. A queued or sending delivery is never deleted, however old."""

from datetime import datetime

from django.conf import settings

from config.core.retention import cutoff, delete_in_batches

# created_at (indexed) bounds the scan; a delivery finishes after it was created.
_DELETE_FINISHED = (
    "DELETE FROM channels_delivery WHERE id IN (SELECT id FROM channels_delivery "
    "WHERE created_at < %s AND finished_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)"
)


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Delete deliveries that finished before RETENTION_DELIVERIES_DAYS."""
    before = cutoff(settings.RETENTION_DELIVERIES_DAYS, now)
    if before is None:
        return {"deliveries_deleted": 0}
    return {
        "deliveries_deleted": delete_in_batches(_DELETE_FINISHED, [before, before], batch=settings.RETENTION_BATCH_SIZE)
    }
