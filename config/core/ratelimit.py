"""Fixed-window rate limits, shared by every process through Redis.

Counting every request in Redis cost a round trip per request (about a tenth of a /v1/track
call's CPU), so each process counts locally and syncs its count to Redis (INCRBY and EXPIRE,
pipelined: one round trip) on the first request of each one-second window and then at most every
RATE_LIMIT_SYNC_MS; the reply is the count of every process so far. A process decides on that
count plus its own requests since: exact for one process, and across N processes at most about N
x (requests in one sync interval) over the limit, which a per-second limit tolerates.
RATE_LIMIT_SYNC_MS=0 syncs every request. Without Redis (embedded mode) the count stays in the
process, which is what a single laptop process needs. If Redis is unreachable the request is let
through: a limiter must not turn a Redis outage into an ingestion outage.
"""

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.core import redis as tl_redis
from config.core.errors import RateLimited


@dataclass(slots=True)
class _Window:
    second: int
    pending: int = 0  # counted here, not yet sent to Redis
    known: int = 0  # the shared count Redis last answered (ours included)
    synced_at: float = -1.0


_lock = threading.Lock()
_windows: dict[tuple[str, str], _Window] = {}


def _sync(key: str, window: _Window, now: float) -> None:
    """Send this process's pending count; learn everyone's. Called with _lock held."""
    pipe = tl_redis.client().pipeline(transaction=False)
    pipe.incrby(key, window.pending)
    pipe.expire(key, 5)
    window.known = int(pipe.execute()[0])
    window.pending = 0
    window.synced_at = now


def hit(bucket: str, subject: str, *, limit_per_second: int) -> None:
    """Count one request; raise RateLimited past the limit for the current second."""
    now = time.monotonic()
    second = int(time.time())
    with _lock:
        window = _windows.get((bucket, subject))
        if window is None or window.second != second:
            if len(_windows) > 10_000:
                _windows.clear()
            window = _windows[(bucket, subject)] = _Window(second)
        window.pending += 1
        if tl_redis.is_configured() and (
            window.synced_at < 0 or now - window.synced_at >= settings.RATE_LIMIT_SYNC_MS / 1000
        ):
            try:
                _sync(tl_redis.Keys.rate(bucket, subject, second), window, now)
            except redis.RedisError:
                return
        count = window.known + window.pending
    if count > limit_per_second:
        raise RateLimited(f"more than {limit_per_second} requests per second", retry_after=1)


class ApiTokenThrottle(BaseThrottle):
    """Per-token limit on the management API."""

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        subject = str(getattr(token, "pk", None) or self.get_ident(request))
        hit("api", subject, limit_per_second=settings.API_RATE_LIMIT_PER_SECOND)
        return True
