"""Retention of journeys' data: decisions by weekly partition; finished enrollments, with their
step runs and timers, in batches (docs/operations.md, "Retention").

Step runs are not partitioned: their unique `key` (what makes a redelivered step a no-op)
could not span partitions, and they belong to their enrollment, which goes as a whole once it
ended long enough ago.
"""

from datetime import datetime

from django.conf import settings

from config.core import partitions
from config.core.retention import cutoff, delete_in_batches

DECISIONS_TABLE = "journeys_decision"
DECISIONS_COLUMN = "at"
DECISIONS_PERIOD: partitions.Period = "week"

# created_at (indexed) bounds the scan; only enrollments that ended before the cutoff go. An
# active enrollment is never deleted, however old.
_DELETE_FINISHED = """
    WITH batch AS MATERIALIZED (
        SELECT id FROM journeys_enrollment
        WHERE created_at < %s AND ended_at < %s AND status <> 'active'
        LIMIT %s FOR UPDATE SKIP LOCKED
    ), runs AS (
        DELETE FROM journeys_steprun WHERE enrollment_id IN (SELECT id FROM batch)
    ), timers AS (
        DELETE FROM journeys_timer WHERE enrollment_id IN (SELECT id FROM batch)
    )
    DELETE FROM journeys_enrollment WHERE id IN (SELECT id FROM batch)
"""


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Create decisions' partitions ahead, drop those past RETENTION_DECISIONS_DAYS, delete
    enrollments finished before RETENTION_STEP_RUNS_DAYS with their step runs and timers."""
    created, dropped = partitions.partitions_keep(
        table=DECISIONS_TABLE,
        column=DECISIONS_COLUMN,
        period=DECISIONS_PERIOD,
        days=settings.RETENTION_DECISIONS_DAYS,
        now=now,
    )
    done = {"decision_partitions_created": created, "decision_partitions_dropped": dropped}
    finished_before = cutoff(settings.RETENTION_STEP_RUNS_DAYS, now)
    done["enrollments_deleted"] = (
        delete_in_batches(_DELETE_FINISHED, [finished_before, finished_before], batch=settings.RETENTION_BATCH_SIZE)
        if finished_before
        else 0
    )
    return done
