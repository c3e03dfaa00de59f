"""Fixed-window rate limits, shared by every process through Redis.

One round trip per check (INCR and EXPIRE pipelined). Without Redis (embedded mode) the count
is kept per process, which is what a single laptop process needs. If Redis is unreachable the
request is let through: a limiter must not turn a Redis outage into an ingestion outage.
"""

import threading
import time
from collections import defaultdict
from typing import Any

import redis
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.core import redis as tl_redis
from config.core.errors import RateLimited

_local_lock = threading.Lock()
_local_counts: defaultdict[str, int] = defaultdict(int)


def _count_locally(key: str) -> int:
    with _local_lock:
        if len(_local_counts) > 10_000:
            _local_counts.clear()
        _local_counts[key] += 1
        return _local_counts[key]


def hit(bucket: str, subject: str, *, limit_per_second: int) -> None:
    """Count one request; raise RateLimited past the limit for the current second."""
    window = int(time.time())
    key = tl_redis.Keys.rate(bucket, subject, window)
    if tl_redis.is_configured():
        try:
            pipe = tl_redis.client().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 5)
            count = int(pipe.execute()[0])
        except redis.RedisError:
            return
    else:
        count = _count_locally(key)
    if count > limit_per_second:
        raise RateLimited(f"more than {limit_per_second} requests per second", retry_after=1)


class ApiTokenThrottle(BaseThrottle):
    """Per-token limit on the management API."""

    def allow_request(self, request: Request, view: Any) -> bool:
        from django.conf import settings

        token = request.auth
        subject = str(getattr(token, "pk", None) or self.get_ident(request))
        hit("api", subject, limit_per_second=settings.API_RATE_LIMIT_PER_SECOND)
        return True
