"""Retention of profiles' data: events by monthly partition, dedup keys and resolved
quarantined messages in batches (docs/operations.md, "Retention")."""

from datetime import datetime

from django.conf import settings

from config.core import partitions
from config.core.retention import cutoff, delete_in_batches

EVENTS_TABLE = "profiles_event"
EVENTS_COLUMN = "received_at"
EVENTS_PERIOD: partitions.Period = "month"

# The one place rows of the dedup table are deleted, a batch at a time: the table is narrow
# (two keys, a time and an id per event) and unpartitioned, so its key stays unique across the
# events' partitions; deleting a window's worth of narrow rows costs little, where deleting
# events row by row would not (they go by partition).
_PURGE_KEYS = (
    "DELETE FROM profiles_eventkey WHERE (source_id, message_id) IN ("
    "SELECT source_id, message_id FROM profiles_eventkey WHERE received_at < %s LIMIT %s)"
)
_PURGE_QUARANTINE = (
    "DELETE FROM profiles_quarantinedmessage WHERE id IN ("
    "SELECT id FROM profiles_quarantinedmessage WHERE received_at < %s AND resolved_at < %s LIMIT %s)"
)


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Create the events' partitions ahead, drop those past RETENTION_EVENTS_DAYS, forget dedup
    keys past DEDUP_WINDOW_DAYS and resolved quarantined messages past their retention.
    Returns counts by what was done."""
    created, dropped = partitions.partitions_keep(
        table=EVENTS_TABLE, column=EVENTS_COLUMN, period=EVENTS_PERIOD, days=settings.RETENTION_EVENTS_DAYS, now=now
    )
    done = {"event_partitions_created": created, "event_partitions_dropped": dropped}
    keys_before = cutoff(max(settings.DEDUP_WINDOW_DAYS, settings.DEDUP_WINDOW_MIN_DAYS), now)
    assert keys_before is not None  # the window is at least 7 days
    done["event_keys_deleted"] = delete_in_batches(_PURGE_KEYS, [keys_before], batch=settings.RETENTION_BATCH_SIZE)
    resolved_before = cutoff(settings.RETENTION_QUARANTINE_RESOLVED_DAYS, now)
    done["quarantine_deleted"] = (
        delete_in_batches(_PURGE_QUARANTINE, [resolved_before, resolved_before], batch=settings.RETENTION_BATCH_SIZE)
        if resolved_before
        else 0
    )
    return done
