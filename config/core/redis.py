"""The one Redis client of the process, every key the project writes, and how hot paths run
their Lua scripts on it.

Keys are built only here, each under the `tl:` namespace, and every write gives them a TTL.
"""

from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from redis.commands.core import Script

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


def run_script(script: Script, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA of `script` on a pooled connection of client(), without redis-py's per-command
    wrapping (its retry closure and observability hooks were a third of a session GET's CPU and
    a sixth of a decide request's). As that wrapping does: a connection that fails is dropped
    and the command tried once more on a fresh one (a pooled connection can be stale after a
    Redis restart), and a script Redis no longer has (restarted, flushed) is loaded by redis-py's
    own call. Other errors (a timeout, the second connection failure) are raised."""
    client_ = client()
    pool = client_.connection_pool
    connection = pool.get_connection()
    try:
        for attempt in range(2):
            try:
                connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return connection.read_response()
            except redis.ConnectionError:
                connection.disconnect()
                if attempt:
                    raise
            except redis.exceptions.NoScriptError:
                break
    finally:
        pool.release(connection)
    return script(keys=keys, args=args, client=client_)


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
