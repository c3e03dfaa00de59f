"""What sessions hold about a customer, for profiles' erase and export (profiles.contracts)."""

import logging
from typing import Any
from uuid import UUID

import redis
from django.db import transaction

from config.core import redis as tl_redis
from sessions.models import SessionContinuation, SessionRecord
from sessions.store import to_doc

logger = logging.getLogger(__name__)


def sessions_erase(customer_ids: list[UUID]) -> dict[str, int]:
    """Delete the customers' sessions (tokens and continuations with them) in the erase
    transaction, and their Redis copies once it commits. A repeat finds nothing to delete."""
    session_ids = [
        str(i) for i in SessionRecord.objects.filter(customer_id__in=customer_ids).values_list("id", flat=True)
    ]
    SessionContinuation.objects.filter(customer_id__in=customer_ids).delete()
    SessionRecord.objects.filter(customer_id__in=customer_ids).delete()
    if tl_redis.is_configured():
        keys = [tl_redis.Keys.session(i) for i in session_ids]
        keys += [tl_redis.Keys.session_index(str(c)) for c in customer_ids]
        transaction.on_commit(lambda: _delete(keys))
    return {"sessions": len(session_ids)}


def _delete(keys: list[str]) -> None:
    try:
        tl_redis.client().delete(*keys)
    except redis.RedisError:
        # Each copy expires with its TTL; until then it is unreachable, its database row gone.
        logger.error("could not delete %d session copies of erased customers", len(keys), exc_info=True)


def sessions_export(customer_ids: list[UUID]) -> list[dict[str, Any]]:
    records = SessionRecord.objects.filter(customer_id__in=customer_ids).order_by("started_at")
    return [to_doc(record).staff() for record in records]
