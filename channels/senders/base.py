import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.policy import PermanentError, SendError, TransientError, classify_status

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    delivery_id: str
    idempotency_key: str
    address: str
    content: dict[str, Any] = field(default_factory=dict)
    timeout: float = 5.0


ErrorClassifier = Callable[[int, bytes, str | None], SendError | None]


def http_post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, classify: ErrorClassifier | None = None
) -> bytes:
    """POST and return the body of a 2xx; anything else becomes a classified SendError
    (`classify` may read the provider's error body first: status, body, Retry-After)."""
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"not an http(s) URL: {url[:200]}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
            return bytes(response.read(MAX_RESPONSE_BYTES))
    except urllib.error.HTTPError as error:
        if classify is not None:
            try:
                detail = bytes(error.read(MAX_RESPONSE_BYTES))
            except OSError:
                detail = b""
            refined = classify(error.code, detail, error.headers.get("Retry-After"))
            if refined is not None:
                raise refined from None
        raise classify_status(error.code, str(error.reason), error.headers.get("Retry-After")) from None
    except TimeoutError as error:
        raise TransientError(f"timed out after {timeout}s: {error}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, OSError):
            raise TransientError(f"connection failed: {error.reason}") from None
        raise PermanentError(f"bad URL: {error.reason}") from None
    except OSError as error:
        raise TransientError(f"connection failed: {error}") from None
    except ValueError as error:
        raise PermanentError(f"bad URL: {error}") from None
