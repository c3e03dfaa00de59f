"""The one rate limiter: fixed one-second windows, shared by every process through Redis.

Counting every request in Redis cost a round trip per request (about a tenth of a /v1/track
call's CPU), so each process counts locally and syncs its count to Redis (INCRBY and EXPIRE,
pipelined: one round trip) on the first request of each one-second window and then at most every
RATE_LIMIT_SYNC_MS; the reply is the count of every process so far. A process decides on that
count plus its own requests since: exact for one process, and across N processes at most about N
x (requests in one sync interval) over the limit, which a per-second limit tolerates.
RATE_LIMIT_SYNC_MS=0 syncs every request. Without Redis (embedded mode) the count stays in the
process, which is what a single laptop process needs.

When Redis cannot be reached, every endpoint class (`Limit` below) fails open to the process's
own count: the limit still holds for what this process has counted (the last shared count Redis
gave in this second plus its own requests since), as in embedded mode, so N processes let
through at most about N times the limit, and nothing is refused for the outage itself. Why, per
class:

- INGEST (/v1 tracking calls): PostgreSQL stores events without Redis, and an event refused
  during an outage is lost for a client that does not retry; a limiter must not turn a Redis
  outage into an ingestion outage.
- SESSIONS (/v1/sessions...): sessions are read from and written to PostgreSQL when Redis is
  down; a channel in a live conversation must keep its session.
- API (the management API, per token): operators need it most during an incident.
- DECIDE (/v1/decide): under its own count it also raises RedisUnavailable, and decide answers
  the journey's default decision marked degraded (`reason: redis_unavailable`), never an error:
  the full answer reads live state from Redis, and the default is the answer a channel can
  always act on.

After a failed sync the window does not try Redis again before RATE_LIMIT_SYNC_MS has passed or
the next second begins, so an outage costs at most one failed round trip per interval, not one
per request; except DECIDE, which tries on every request while Redis is down, so that its
answers are whole again from the first request after Redis returns.
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


class RedisUnavailable(Exception):
    """The shared count could not be read, for an endpoint class that must know it."""


@dataclass(frozen=True, slots=True)
class Limit:
    """An endpoint class: its bucket (Redis key part), the setting holding its per-second limit,
    and whether a request under the limit is also told of a Redis outage (RedisUnavailable)."""

    bucket: str
    setting: str
    raise_when_redis_down: bool = False

    @property
    def per_second(self) -> int:
        return int(getattr(settings, self.setting))


INGEST = Limit("ingest", "INGEST_RATE_LIMIT_PER_SECOND")
SESSIONS = Limit("sessions", "SESSIONS_RATE_LIMIT_PER_SECOND")
DECIDE = Limit("decide", "INGEST_RATE_LIMIT_PER_SECOND", raise_when_redis_down=True)
API = Limit("api", "API_RATE_LIMIT_PER_SECOND")


@dataclass(slots=True)
class _Window:
    second: int
    pending: int = 0  # counted here, not yet sent to Redis
    known: int = 0  # the shared count Redis last answered (ours included)
    synced_at: float = -1.0
    redis_down: bool = False  # the last sync failed


_lock = threading.Lock()
_windows: dict[tuple[str, str], _Window] = {}


def _sync(key: str, window: _Window, now: float) -> None:
    """Send this process's pending count; learn everyone's. Called with _lock held."""
    window.synced_at = now
    pipe = tl_redis.client().pipeline(transaction=False)
    pipe.incrby(key, window.pending)
    pipe.expire(key, 5)
    try:
        window.known = int(pipe.execute()[0])
    except redis.RedisError:
        window.redis_down = True
        return
    window.redis_down = False
    window.pending = 0


def hit(limit: Limit, subject: str) -> None:
    """Count one request of `subject` (a source, a token) in `limit`'s class; RateLimited past
    its limit for the current second, RedisUnavailable as the class states."""
    now = time.monotonic()
    second = int(time.time())
    per_second = limit.per_second
    with _lock:
        window = _windows.get((limit.bucket, subject))
        if window is None or window.second != second:
            if len(_windows) > 10_000:
                _windows.clear()
            window = _windows[(limit.bucket, subject)] = _Window(second)
        window.pending += 1
        if tl_redis.is_configured() and (
            window.synced_at < 0
            or now - window.synced_at >= settings.RATE_LIMIT_SYNC_MS / 1000
            or (window.redis_down and limit.raise_when_redis_down)
        ):
            _sync(tl_redis.Keys.rate(limit.bucket, subject, second), window, now)
        redis_down = window.redis_down
        count = window.known + window.pending
    if count > per_second:
        raise RateLimited(f"more than {per_second} requests per second", retry_after=1)
    if redis_down and limit.raise_when_redis_down:
        raise RedisUnavailable(limit.bucket)


class ApiTokenThrottle(BaseThrottle):
    """Per-token limit on the management API."""

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        subject = str(getattr(token, "pk", None) or self.get_ident(request))
        hit(API, subject)
        return True
