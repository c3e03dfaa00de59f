"""The one Redis client of the process, and every key the project writes.

Keys are built only here, each under the `tl:` namespace, and every write gives them a TTL.
"""

from functools import lru_cache

import redis
from django.conf import settings

NAMESPACE = "tl"


def is_configured() -> bool:
    return bool(settings.REDIS_URL)


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        health_check_interval=30,
    )


class Keys:
    @staticmethod
    def rate(bucket: str, subject: str, window: int) -> str:
        return f"{NAMESPACE}:rate:{bucket}:{subject}:{window}"

    @staticmethod
    def session(session_id: str) -> str:
        """A session's state: hash {v: version, d: JSON document}."""
        return f"{NAMESPACE}:sess:{session_id}"

    @staticmethod
    def session_index(customer_id: str) -> str:
        """A customer's active sessions: sorted set of session ids scored by expiry."""
        return f"{NAMESPACE}:sessidx:{customer_id}"
