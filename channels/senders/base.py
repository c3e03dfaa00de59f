import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, LocationValueError, ProtocolError
from urllib3.exceptions import TimeoutError as PoolTimeout

from channels.retry import PermanentError, SendError, TransientError, classify_status

MAX_RESPONSE_BYTES = 64 * 1024
# Idle keep-alive connections kept per destination host and process: a batch sends to one host
# from several threads at once, and each would otherwise open (and tear down) a connection.
POOL_CONNECTIONS_PER_HOST = 16
POOL_HOSTS = 64


@dataclass(frozen=True, slots=True)
class Outgoing:
    delivery_id: str
    idempotency_key: str
    address: str
    content: dict[str, Any] = field(default_factory=dict)
    timeout: float = 5.0


ErrorClassifier = Callable[[int, bytes, str | None], SendError | None]

_pools: dict[str, urllib3.PoolManager] = {}
_pool_lock = threading.Lock()


def _manager() -> urllib3.PoolManager:
    """One keep-alive pool per process, made on first use (after a prefork worker forks, so no
    socket is shared between processes). No redirects: a provider's 3xx is an answer, and
    following one would let a webhook URL lead past the destination check."""
    with _pool_lock:
        pool = _pools.get("http")
        if pool is None:
            pool = _pools["http"] = urllib3.PoolManager(
                num_pools=POOL_HOSTS, maxsize=POOL_CONNECTIONS_PER_HOST, block=False, retries=False
            )
        return pool


def connections_forget() -> None:
    """Close every pooled connection (tests, and a process that forked after using the pool)."""
    with _pool_lock:
        pool = _pools.pop("http", None)
    if pool is not None:
        pool.clear()


def http_post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, classify: ErrorClassifier | None = None
) -> bytes:
    """POST over a pooled keep-alive connection and return the body of a 2xx; anything else
    becomes a classified SendError (`classify` may read the provider's error body first:
    status, body, Retry-After). Whether the provider received a request that then failed is
    unknown, so the caller's idempotency key travels with every attempt."""
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"not an http(s) URL: {url[:200]}")
    try:
        response = _manager().request(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout),
            preload_content=False,
            redirect=False,
        )
        try:
            answer = bytes(response.read(MAX_RESPONSE_BYTES))
        finally:
            if response.length_remaining:
                response.close()  # more than we read: the connection cannot be reused
            else:
                response.release_conn()
    except (PoolTimeout, TimeoutError) as error:
        raise TransientError(f"timed out after {timeout}s: {error}") from None
    except LocationValueError as error:
        raise PermanentError(f"bad URL: {error}") from None
    except (ProtocolError, HTTPError, OSError) as error:
        raise TransientError(f"connection failed: {error}") from None
    except ValueError as error:
        raise PermanentError(f"bad URL: {error}") from None
    if 200 <= response.status < 300:
        return answer
    retry_after = response.headers.get("Retry-After")
    if classify is not None:
        refined = classify(response.status, answer, retry_after)
        if refined is not None:
            raise refined
    raise classify_status(response.status, response.reason or "", retry_after)
