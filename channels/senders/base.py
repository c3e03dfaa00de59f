from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.retry import PermanentError, SendError, TransientError, classify_status
from config.core import outbound

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    delivery_id: str
    idempotency_key: str
    address: str
    content: dict[str, Any] = field(default_factory=dict)
    timeout: float = 5.0
    channel: str = ""


ErrorClassifier = Callable[[int, bytes, str | None], SendError | None]


def http_post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, classify: ErrorClassifier | None = None
) -> bytes:
    """POST through the outbound client and return the body of a 2xx; anything else becomes a
    classified SendError (`classify` may read the provider's error body first: status, body,
    Retry-After). A refused destination is permanent; a timeout or a failed connection is
    transient. Whether the provider received a request that then failed is unknown, so the
    caller's idempotency key travels with every attempt."""
    try:
        response = outbound.request(
            "POST", url, headers=headers, body=body, timeout=timeout, max_body=MAX_RESPONSE_BYTES
        )
    except outbound.Refused as refused:
        raise PermanentError(f"refused: {refused}") from None
    except outbound.CallTimeout as error:
        raise TransientError(f"timed out after {timeout}s: {error}") from None
    except outbound.OutboundError as error:
        raise TransientError(f"connection failed: {error}") from None
    if 200 <= response.status < 300:
        return response.body
    retry_after = response.headers.get("Retry-After")
    if classify is not None:
        refined = classify(response.status, response.body, retry_after)
        if refined is not None:
            raise refined
    raise classify_status(response.status, response.reason, retry_after)
