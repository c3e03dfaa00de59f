"""One circuit breaker per provider and destination host, in the worker's memory.

In memory on purpose: each worker process learns a provider is down after a handful of its own
failures, which costs a few extra requests per process but no shared-state round trip on every
send and no Redis dependency for the breaker itself. Permanent errors (a 4xx for one bad
address) say nothing about the provider's health, so they do not count.
"""

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pybreaker
from django.conf import settings

from channels.retry import PermanentError
from config.core import metrics

_breakers: dict[tuple[str, str], pybreaker.CircuitBreaker] = {}
_opened_at: dict[tuple[str, str], float] = {}
# The openings (key and when it opened) whose half-open trial a claim has already asked a task for.
_woken: set[tuple[tuple[str, str], float]] = set()
_lock = threading.Lock()


def destination_key(provider: str, host: str) -> str:
    """How a delivery's destination hint names a breaker (Delivery.destination)."""
    return f"{provider}@{host}"


def destination_host(config: dict[str, str], address: str) -> str:
    url = config.get("base_url") or (address if address.startswith(("http://", "https://")) else "")
    if url:
        return urlsplit(url).netloc
    return f"{config.get('host', '')}:{config.get('port', '')}"


def breaker_for(provider: str, host: str) -> pybreaker.CircuitBreaker:
    key = (provider, host)
    with _lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = pybreaker.CircuitBreaker(
                fail_max=settings.CHANNELS_BREAKER_FAIL_MAX,
                reset_timeout=settings.CHANNELS_BREAKER_RESET_SECONDS,
                exclude=[PermanentError],
                name=f"{provider}@{host}",
                listeners=[_StateGauge(provider), _OpenedAt(key)],
            )
            _breakers[key] = breaker
        return breaker


class _StateGauge(pybreaker.CircuitBreakerListener):
    """Keeps throughline_circuit_breaker_open{provider} at 1 while any of this process's
    breakers for the provider is open (one per destination host; hosts are not a label, a
    webhook has as many as customers configure)."""

    def __init__(self, provider: str):
        self.provider = provider

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        with _lock:
            mine = [b for (p, _), b in _breakers.items() if p == self.provider and b is not cb]
        is_open = new_state.name == pybreaker.STATE_OPEN or any(b.current_state == pybreaker.STATE_OPEN for b in mine)
        metrics.BREAKER_STATE.labels(provider=self.provider).set(1 if is_open else 0)


class _OpenedAt(pybreaker.CircuitBreakerListener):
    """Remembers when a breaker opened, so a delivery can wait for its half-open trial instead
    of spending an attempt on a refusal."""

    def __init__(self, key: tuple[str, str]):
        self.key = key

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        with _lock:
            opened = _opened_at.pop(self.key, None)
            _woken.discard((self.key, opened or 0.0))
            if new_state.name == pybreaker.STATE_OPEN:
                _opened_at[self.key] = time.monotonic()


def open_for(provider: str, host: str) -> float:
    """Seconds until this process's breaker for the provider and host lets a trial call through;
    0 when it is closed, half-open, or due for its trial."""
    with _lock:
        opened = _opened_at.get((provider, host))
        breaker = _breakers.get((provider, host))
    if opened is None or breaker is None:
        return 0.0
    return max(0.0, opened + breaker.reset_timeout - time.monotonic())


def any_open() -> bool:
    """Whether this process has an open breaker at all: the cheap test before looking closer."""
    return bool(_opened_at)


def open_destinations() -> tuple[list[str], float | None]:
    """The destination keys of this process's open breakers whose trial is not due yet (what a
    fresh claim leaves out), and the seconds until the earliest trial among the openings no
    caller was told about before (None when there is none): the caller makes sure a task runs
    then, once per opening, so what it left out is claimed again for the trial. Costs nothing
    while no breaker is open."""
    if not _opened_at:
        return [], None
    now = time.monotonic()
    keys: list[str] = []
    wake: float | None = None
    with _lock:
        for key, opened in _opened_at.items():
            breaker = _breakers.get(key)
            if breaker is None:
                continue
            remaining = opened + breaker.reset_timeout - now
            if remaining <= 0:
                continue
            keys.append(destination_key(*key))
            if (key, opened) not in _woken:
                _woken.add((key, opened))
                wake = remaining if wake is None else min(wake, remaining)
    return keys, wake


def breakers_reset() -> None:
    """Forget every breaker (tests, and a worker that is told a provider recovered)."""
    with _lock:
        _breakers.clear()
        _opened_at.clear()
        _woken.clear()
    metrics.BREAKER_STATE.clear()
