"""Transactions that a deadlock or a serialization failure rolls back and runs again.

Row locks taken in id order keep writers of the same rows from deadlocking with each other, but
not writers that reach the same rows through different tables (an erase deleting a person's
events while routing, holding those events' outbox rows, waits to lock the person): PostgreSQL
then aborts one of them, and the one aborted runs again once the other has finished.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Deadlock detected, serialization failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3


def is_retryable(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES


def atomic_retrying(work: Callable[[], T], *, what: str, attempts: int = ATTEMPTS) -> T:
    """`work()` in a transaction of its own, run again (up to `attempts` in all) when PostgreSQL
    aborts it as a deadlock victim or a serialization failure. Inside a caller's transaction it
    runs once, in that transaction: only the outermost transaction can be run again."""
    if connection.in_atomic_block:
        return work()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as error:
            if not is_retryable(error) or attempt == attempts:
                raise
            logger.info("%s was aborted by a deadlock or serialization failure; running it again", what)
    raise AssertionError("unreachable")
