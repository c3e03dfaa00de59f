"""What every app's retention service shares: the cutoff of a retention setting and the
bounded-batch delete of the tables that are trimmed rather than partitioned."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

# Batches per table per run: a backlog (the first run after retention is turned on) is worked
# off over several runs instead of one long task; each batch is its own short transaction.
MAX_BATCHES_PER_RUN = 20


def cutoff(days: int, now: datetime) -> datetime | None:
    """Data older than this goes; None when `days` is 0 (kept forever)."""
    return now - timedelta(days=days) if days > 0 else None


def delete_in_batches(sql: str, params: Sequence[Any], *, batch: int) -> int:
    """Run `sql` (a DELETE of at most `batch` rows) until it deletes fewer
    than `batch` rows or MAX_BATCHES_PER_RUN batches ran; the rows deleted. The batch size is
    `sql`'s last parameter."""
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch])
            deleted = cursor.rowcount
        total += deleted
        if deleted < batch:
            break
    return total
