"""What sessions hold about a customer, for profiles' erase and export (profiles.contracts)."""

import logging
from typing import Any
from uuid import UUID

import redis
from django.db import transaction

from config.core import redis as tl_redis
from sessions.models import SessionContinuation, SessionRecord
from sessions.store import copies_stale, to_doc

logger = logging.getLogger(__name__)


def sessions_erase(customer_ids: list[UUID]) -> dict[str, int]:
    """Delete the customers' sessions (tokens and continuations with them) in the erase
    transaction, and their Redis copies once it commits. A repeat finds nothing to delete."""
    sessions = {
        str(s): str(c)
        for s, c in SessionRecord.objects.filter(customer_id__in=customer_ids).values_list("id", "customer_id")
    }
    SessionContinuation.objects.filter(customer_id__in=customer_ids).delete()
    SessionRecord.objects.filter(customer_id__in=customer_ids).delete()
    if tl_redis.is_configured():
        transaction.on_commit(lambda: _delete(sessions, customer_ids))
    return {"sessions": len(sessions)}


def _delete(sessions: dict[str, str], customer_ids: list[UUID]) -> None:
    keys = [tl_redis.Keys.session(s) for s in sessions]
    keys += [tl_redis.Keys.session_index(str(c)) for c in customer_ids]
    try:
        tl_redis.client().delete(*keys)
    except redis.RedisError:
        # A copy left in Redis would still be served by id: recorded as stale, no process serves
        # it once the erase has answered, and the first read after Redis is back deletes it.
        logger.error("could not delete %d session copies of erased customers", len(keys), exc_info=True)
        if sessions:
            copies_stale(sessions)


def sessions_export(customer_ids: list[UUID]) -> list[dict[str, Any]]:
    records = SessionRecord.objects.filter(customer_id__in=customer_ids).order_by("started_at")
    return [to_doc(record).staff() for record in records]
