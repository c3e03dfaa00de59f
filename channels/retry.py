"""Retry policy, pure: which failures retry and after how long."""

import random


class SendError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransientError(SendError):
    """Worth retrying: a timeout, a refused connection, a 5xx, a 429."""

    def __init__(self, reason: str, *, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class BreakersOpen(TransientError):
    """Every provider of the delivery refused without being called: their breakers are open.
    The delivery waits for the first half-open trial (`wait` seconds) without spending an attempt."""

    def __init__(self, reason: str, *, wait: float):
        super().__init__(reason)
        self.wait = wait


class PermanentError(SendError):
    """Retrying cannot help: a 4xx, an invalid address."""


class AddressRejected(PermanentError):
    """The provider says the address itself is dead (a push token no longer registered): later
    deliveries to it are skipped as undeliverable."""


def classify_status(status: int, reason: str, retry_after: str | None) -> SendError:
    if status == 429 or status >= 500:
        return TransientError(f"HTTP {status}: {reason}", retry_after=parse_retry_after(retry_after))
    return PermanentError(f"HTTP {status}: {reason}")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is rare from APIs and treated as absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def backoff_seconds(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Exponential backoff with jitter (half fixed, half random, so retries of many deliveries
    that failed together spread out), never sooner than the provider's Retry-After."""
    exponential = min(cap, base * 2 ** max(0, attempt - 1))
    delay = exponential / 2 + (rng or random).uniform(0, exponential / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
