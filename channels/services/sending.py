"""The sends of claimed deliveries: in parallel threads, each through its channel's providers in
order (failover), each provider behind its destination's circuit breaker."""

import threading
from collections.abc import Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait

import pybreaker
from django.conf import settings

from channels import selectors
from channels.breaker import breaker_for, destination_host, open_for
from channels.models import Delivery, DeliveryStatus
from channels.retry import BreakersOpen, PermanentError, SendError, TransientError
from channels.senders import SENDERS, Outgoing, Sender
from channels.services.claims import Claim


def _send(delivery: Delivery, outgoing: Outgoing) -> tuple[str, str]:
    """Try the channel's providers in order; the first to accept wins. Open breakers are
    skipped, a transient failure moves on to the next provider, a permanent one stops."""
    names = selectors.providers_for(channel=delivery.channel, fallback=delivery.fallback)
    if not names:
        raise PermanentError(f"no provider configured for {delivery.channel}")
    errors: list[str] = []
    retry_after: float | None = None
    refused: list[float] = []
    for name in names:
        config = settings.CHANNELS_PROVIDERS[name]
        host = destination_host(config, outgoing.address)
        breaker = breaker_for(name, host)
        failures: list[TransientError] = []
        try:
            return name, _guarded(breaker, _recording(SENDERS[config["kind"]], failures), config, outgoing)
        except PermanentError:
            raise
        except (TransientError, pybreaker.CircuitBreakerError) as error:
            # An open breaker refuses without calling the provider (until its reset timeout
            # lets one trial call through); the one that trips replaces the failure with
            # CircuitBreakerError, so the cause is kept by _recording.
            cause = failures[-1] if failures else error
            reason = cause.reason if isinstance(cause, TransientError) else str(cause)
            errors.append(f"{name}: {reason}")
            if isinstance(cause, TransientError) and retry_after is None:
                retry_after = cause.retry_after
            if not failures and isinstance(error, pybreaker.CircuitBreakerError):
                refused.append(open_for(name, host))
    if len(refused) == len(names):
        raise BreakersOpen("; ".join(errors), wait=min(refused))
    raise TransientError("; ".join(errors), retry_after=retry_after)


def _guarded(breaker: pybreaker.CircuitBreaker, sender: Sender, config: dict[str, str], outgoing: Outgoing) -> str:
    """Send through the breaker. pybreaker's call() holds the breaker's lock for the whole call:
    one send at a time per host and process, whatever the batch's threads. While it is closed
    the sends run side by side (calling() takes the lock only to check and to count); a
    half-open breaker keeps the locked call, so one trial at a time probes a host that was down."""
    if breaker.current_state == pybreaker.STATE_CLOSED:
        with breaker.calling():
            return sender(config, outgoing)
    return breaker.call(sender, config, outgoing)


def _recording(sender: Sender, failures: list[TransientError]) -> Sender:
    def send(config: dict[str, str], outgoing: Outgoing) -> str:
        try:
            return sender(config, outgoing)
        except TransientError as error:
            failures.append(error)
            raise

    return send


SendOutcome = tuple[Claim, str, str, Exception | None]  # claim, status or "", message id, error
_executors: dict[str, ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def _sender_pool() -> ThreadPoolExecutor:
    """The process's send threads, made on first use (after a prefork worker forked)."""
    with _executor_lock:
        pool = _executors.get("send")
        if pool is None:
            pool = _executors["send"] = ThreadPoolExecutor(
                max_workers=settings.CHANNELS_SEND_THREADS, thread_name_prefix="send"
            )
        return pool


def _send_one(claim: Claim) -> SendOutcome:
    delivery = claim.delivery
    outgoing = Outgoing(
        delivery_id=str(delivery.id),
        idempotency_key=delivery.idempotency_key,
        address=delivery.address,
        content=delivery.content,
        timeout=settings.CHANNELS_SEND_TIMEOUT_SECONDS,
        channel=delivery.channel,
    )
    try:
        provider, message_id = _send(delivery, outgoing)
    except SendError as error:
        return claim, "", "", error
    delivery.provider = provider
    return claim, DeliveryStatus.SENT, message_id[:200], None


def send_all(claims: list[Claim]) -> Iterator[list[SendOutcome]]:
    """Send the claimed deliveries, in parallel threads when there are several (the sends wait on
    the network, not the CPU), and hand back their outcomes in waves: all that finished within
    CHANNELS_SEND_WAVE_SECONDS together, then each straggler (a slow or timing-out host) as it
    ends, so one slow destination does not hold the others' outcomes back."""
    if len(claims) == 1:
        yield [_send_one(claims[0])]
        return
    if not claims:
        return
    pool = _sender_pool()
    pending = {pool.submit(_send_one, claim) for claim in claims}
    timeout: float | None = settings.CHANNELS_SEND_WAVE_SECONDS
    while pending:
        done, pending = wait(pending, timeout=timeout, return_when=ALL_COMPLETED if timeout else FIRST_COMPLETED)
        timeout = None
        if done:
            yield [future.result() for future in done]
