"""Writes of the channels app: `deliver`, one send attempt, outcome events, webhook secrets."""

import base64
import contextlib
import hashlib
import logging
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import orjson
import pybreaker
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from channels import contact, keys, selectors
from channels.adapters.base import DELIVERED, OPT_OUT, UNDELIVERABLE, Outcome
from channels.breaker import any_open, breaker_for, destination_host, destination_key, open_destinations, open_for
from channels.models import (
    ContactPolicy,
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    UndeliverableAddress,
    WebhookProvider,
    WebhookSecret,
)
from channels.retry import AddressRejected, BreakersOpen, PermanentError, SendError, TransientError, backoff_seconds
from channels.senders import SENDERS, Outgoing, Sender
from config.core import metrics, observability
from config.core import redis as tl_redis
from config.core.errors import BadRequest, NotFound
from profiles import services as profile_services
from profiles.contracts import SourceInfo
from profiles.ingest import event_ingest
from profiles.models import Customer
from profiles.privacy import conventions
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.selectors import consent_allows_many
from profiles.privacy.services import consent_set
from profiles.selectors import customer_find, customer_get, customer_live

logger = logging.getLogger(__name__)

SYSTEM_SOURCE_NAME = "throughline-channels"
OUTCOME_EVENTS: dict[str, str] = {
    DeliveryStatus.SENT: "Message Sent",
    DeliveryStatus.DELIVERED: "Message Delivered",
    DeliveryStatus.FAILED: "Message Failed",
    DeliveryStatus.DEAD: "Message Failed",
    DeliveryStatus.SKIPPED: "Message Failed",
}


# --- deliver ---------------------------------------------------------------------------------


def deliver(
    *,
    channel: str,
    customer_id: UUID,
    content: dict[str, Any],
    idempotency_key: str,
    purpose: str = "transactional",
    priority: str = "normal",
    fallback: list[str] | None = None,
) -> Delivery:
    """Record a delivery and enqueue its send after commit; the same key returns the same
    delivery and enqueues nothing again."""
    if channel not in DeliveryChannel.values:
        raise BadRequest(f"channel must be one of {DeliveryChannel.values}", code="invalid_channel")
    if not idempotency_key or len(idempotency_key) > 200:
        raise BadRequest("idempotency_key must be 1 to 200 characters", code="invalid_idempotency_key")
    if conventions.normalize_purpose(purpose) is None:
        raise BadRequest("purpose must be a name such as marketing or transactional", code="invalid_purpose")
    if priority not in contact.PRIORITIES:
        raise BadRequest(f"priority must be one of {list(contact.PRIORITIES)}", code="invalid_priority")
    unknown = [name for name in fallback or [] if name not in settings.CHANNELS_PROVIDERS]
    if unknown:
        raise BadRequest(f"unknown fallback providers: {unknown}", code="invalid_fallback")
    existing = Delivery.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                idempotency_key=idempotency_key,
                channel=channel,
                purpose=conventions.normalize_purpose(purpose) or purpose,
                priority=priority,
                customer_id=customer_id,
                content=content,
                fallback=list(fallback or []),
                destination=_destination_hint(channel=channel, customer_id=customer_id, fallback=fallback or []),
                queued_at=timezone.now(),
            )
            # After commit, in the caller's trace (a journey step routing an event): the send
            # joins the event's trace even though the commit happens outside the step.
            observability.on_commit_in_context(send_enqueue, str(delivery.id))
    except IntegrityError:
        # A concurrent call with the same key won the insert: that one is the delivery.
        return Delivery.objects.get(idempotency_key=idempotency_key)
    return delivery


def _destination_hint(*, channel: str, customer_id: UUID, fallback: list[str]) -> str:
    """Where the delivery will go, as its breaker is keyed (provider@host), when it has one
    provider: a fresh claim leaves it out while that breaker is open, so a host that is down
    costs no claims. Empty (never left out) with several providers, since a healthy fallback
    must not wait on the primary, and when the destination is not known. At most one read (a
    webhook's URL is the customer's trait); the claim still resolves the address itself."""
    names = selectors.providers_for(channel=channel, fallback=fallback)
    if len(names) != 1:
        return ""
    config = settings.CHANNELS_PROVIDERS[names[0]]
    address = ""
    if not config.get("base_url") and not config.get("host"):
        if channel != DeliveryChannel.WEBHOOK:
            return ""
        traits = Customer.objects.filter(id=customer_id).values_list("traits", flat=True).first()
        url = (traits or {}).get("webhook_url") if isinstance(traits, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return ""
        address = url
    return destination_key(names[0], destination_host(config, address))[:600]


def send_enqueue(delivery_id: str) -> None:
    """Publish the send task of a delivery just committed, unless a send task that has not
    started yet is queued: that one claims every never-tried delivery, oldest first, this one
    included, so a burst of deliveries costs a few tasks rather than one each. The marker
    expires after CHANNELS_SEND_PENDING_SECONDS, so a task lost with the broker holds nothing
    back for long (and the queued sweeper finds what it left)."""
    from channels.tasks import send_delivery

    marked = False
    if tl_redis.is_configured() and settings.CHANNELS_SEND_PENDING_SECONDS > 0:
        try:
            marked = bool(
                tl_redis.client().set(
                    keys.send_pending(), delivery_id, nx=True, ex=settings.CHANNELS_SEND_PENDING_SECONDS
                )
            )
        except RedisError:
            logger.warning("send marker unavailable: publishing the send task anyway", exc_info=True)
        else:
            if not marked:
                return
    try:
        send_delivery.delay(delivery_id)
    except Exception:
        if marked:  # no task behind the marker: let the next delivery publish one
            send_pending_clear()
        raise


def send_pending_clear() -> None:
    """A send task started: deliveries committed from now on publish their own task again."""
    if tl_redis.is_configured():
        with contextlib.suppress(RedisError):
            tl_redis.client().delete(keys.send_pending())


# --- send attempts, as the task runs them ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: str
    retry_in: float | None = None


def delivery_attempt(*, delivery_id: UUID) -> AttemptResult:
    """Claim a queued delivery, check consent and address, send through the channel's providers
    (skipping any whose breaker is open), then record the outcome. A delivery that is not
    queued (sent, sending elsewhere, finished) is left alone, so a redelivered task never sends
    twice."""
    return deliveries_attempt(delivery_ids=[delivery_id])[delivery_id]


def deliveries_attempt(
    *,
    delivery_ids: list[UUID],
    fresh: int = 0,
    only_fresh: bool = False,
    on_full: Callable[[], None] | None = None,
    on_parked: Callable[[float], None] | None = None,
) -> dict[UUID, AttemptResult]:
    """delivery_attempt for the given deliveries and up to `fresh` more that are queued and were
    never tried (oldest first, SKIP LOCKED): one claim, set-based checks, the sends in parallel
    over pooled connections, and their outcomes written in as few transactions as the sends
    take. `only_fresh` leaves the given ones alone unless never tried either (the task that
    `deliver` enqueued: a delivery another batch already took and put back for a retry waits for
    its own retry task, so its backoff holds). Returns a result for every delivery it took or
    was given; those with `retry_in` need a task again that many seconds from now. `on_full`
    runs before the sends when the claim took all `fresh` it could: more may be waiting, and a
    task started then works on them while these are sent. The fresh claim leaves out deliveries
    whose destination has an open breaker in this process; `on_parked(seconds)` runs once per
    breaker opening, with the seconds until its half-open trial: a task must claim again then,
    or those left out would wait for the queued sweeper."""
    results: dict[UUID, AttemptResult] = {}
    # Those whose providers are all known down in this process wait for the half-open trial
    # without a write, an attempt, or a request to the provider.
    waits = _breakers_waits(delivery_ids)
    for delivery_id, seconds in waits.items():
        results[delivery_id] = AttemptResult(status=DeliveryStatus.QUEUED, retry_in=seconds)
    wanted = [delivery_id for delivery_id in delivery_ids if delivery_id not in waits]
    parked: list[str] = []
    if fresh:
        parked, wake_in = open_destinations()
        if wake_in is not None and on_parked is not None:
            on_parked(wake_in)
    claims = _claim_many(wanted, fresh=fresh, only_fresh=only_fresh, parked=parked) if wanted or fresh else []
    taken = {claim.delivery.id for claim in claims}
    if on_full is not None and fresh and len(claims) - len(taken & set(wanted)) >= fresh:
        on_full()
    left = [delivery_id for delivery_id in wanted if delivery_id not in taken]
    if left and only_fresh:
        # The task `deliver` enqueued, for a delivery another batch took: nothing to report.
        results.update({delivery_id: AttemptResult(status="taken") for delivery_id in left})
    elif left:
        statuses = dict(Delivery.objects.filter(id__in=left).values_list("id", "status"))
        for delivery_id in left:
            results[delivery_id] = AttemptResult(status=statuses.get(delivery_id) or "missing")
    skipped = [claim for claim in claims if claim.skip_reason]
    if skipped:
        results.update(_record([(claim, DeliveryStatus.SKIPPED, "", None) for claim in skipped]))
    for outcomes in _send_all([claim for claim in claims if not claim.skip_reason]):
        results.update(_record(outcomes))
    return results


@dataclass(frozen=True, slots=True)
class _Person:
    """The customer a send is for and their identities, read once at the claim and reused for
    the address and the outcome event (each read is a round trip on the hot path)."""

    customer: Customer
    identities: selectors.Identities


@dataclass(slots=True)
class _Claim:
    delivery: Delivery
    skip_reason: str
    person: _Person | None


_TABLE = Delivery._meta.db_table
_DELIVERY_COLUMNS = [field.column for field in Delivery._meta.concrete_fields]
_NEVER_TRIED = "status = 'queued' AND attempts = 0 AND last_error = ''"
# The claim as one statement: lock the rows, check they are still queued and take them, where
# an ORM select_for_update + save costs two statements per delivery. The given ids wait for a
# row lock held elsewhere (and then see it is taken); the fresh ones skip locked rows and those
# whose destination hint has an open breaker here (an empty list while none is open).
_CLAIM_SQL = (
    f"WITH fresh AS (SELECT id FROM {_TABLE} WHERE {_NEVER_TRIED} AND NOT id = ANY(%s::uuid[]) "  # noqa: S608
    "AND NOT destination = ANY(%s::text[]) "
    "ORDER BY status, created_at LIMIT %s FOR UPDATE SKIP LOCKED) "
    f"UPDATE {_TABLE} SET status = %s, attempts = attempts + 1, updated_at = %s "
    "WHERE status = 'queued' AND id IN (SELECT unnest(%s::uuid[]) UNION ALL SELECT id FROM fresh) "
    f"RETURNING {', '.join(_DELIVERY_COLUMNS)}"
)
_CLAIM_FRESH_SQL = _CLAIM_SQL.replace("WHERE status = 'queued' AND id IN", f"WHERE {_NEVER_TRIED} AND id IN", 1)


def _breaker_delay(wait: float) -> float:
    # Spread the retries of the many deliveries parked on one outage over a second past the trial.
    return max(wait, 0.05) + random.uniform(0, 1.0)  # noqa: S311 - jitter, not a secret


def _breakers_waits(delivery_ids: list[UUID]) -> dict[UUID, float]:
    """Seconds to wait for each of these queued deliveries whose providers all have an open
    breaker in this process (the others are not in the answer). Costs nothing while no breaker
    is open, one query for the lot otherwise."""
    if not any_open() or not delivery_ids:
        return {}
    rows = Delivery.objects.filter(id__in=delivery_ids, status=DeliveryStatus.QUEUED).values_list(
        "id", "channel", "fallback", "address", "destination", "queued_at"
    )
    now = timezone.now()
    answer: dict[UUID, float] = {}
    for delivery_id, channel, fallback, address, destination, queued_at in rows:
        if (now - queued_at).total_seconds() > settings.CHANNELS_MAX_DEFER_SECONDS:
            continue  # waited long enough: the claim gives it up
        if not address and destination:
            # Never claimed yet: the hint recorded when it was queued names its one breaker.
            provider, _, host = destination.partition("@")
            wait = open_for(provider, host)
            if wait > 0:
                answer[delivery_id] = _breaker_delay(wait)
            continue
        waits = []
        for name in selectors.providers_for(channel=channel, fallback=fallback):
            config = settings.CHANNELS_PROVIDERS[name]
            if not config.get("base_url") and not config.get("host") and not address:
                break  # the destination is the address, not known before the first claim
            waits.append(open_for(name, destination_host(config, address)))
        else:
            if waits and min(waits) > 0:
                answer[delivery_id] = _breaker_delay(min(waits))
    return answer


def _claim_many(delivery_ids: list[UUID], *, fresh: int, only_fresh: bool, parked: list[str]) -> list[_Claim]:
    """Take queued deliveries (status sending), then check whether each may go: the customer,
    consent, the address, the contact policy; a handful of queries for the whole batch. The
    claim is one statement on its own (a task that finds its delivery taken costs one round
    trip); a crash after it leaves the deliveries "sending" for the stuck sweeper, as a crash
    mid-send does. The address is written when the attempt finishes."""
    # raw() applies the fields' converters (the JSON content) to the returned rows.
    deliveries = list(
        Delivery.objects.raw(
            _CLAIM_FRESH_SQL if only_fresh else _CLAIM_SQL,
            [delivery_ids, parked, fresh, DeliveryStatus.SENDING, timezone.now(), delivery_ids],
        )
    )
    if not deliveries:
        return []
    # The contact policy's advisory locks are transaction-scoped: a transaction only for them.
    policed = any(delivery.purpose not in contact.EXEMPT_PURPOSES for delivery in deliveries)
    with transaction.atomic() if policed else contextlib.nullcontext():
        return _checked(deliveries)


def _checked(deliveries: list[Delivery]) -> list[_Claim]:
    customers = customers_live(customer_ids={delivery.customer_id for delivery in deliveries})
    identities = selectors.customers_identities(customers=list(customers.values()))
    allowed: dict[tuple[str, str], dict[UUID, bool]] = {}
    for kind in {(delivery.purpose, delivery.channel) for delivery in deliveries}:
        owners = [
            customers[d.customer_id].id
            for d in deliveries
            if (d.purpose, d.channel) == kind and d.customer_id in customers
        ]
        allowed[kind] = consent_allows_many(customer_ids=owners, purpose=kind[0], channel=kind[1])
    claims: list[_Claim] = []
    for delivery in deliveries:
        customer = customers.get(delivery.customer_id)
        person = _Person(customer, identities.get(customer.id, [])) if customer is not None else None
        claim = _Claim(delivery, "", person)
        claims.append(claim)
        if customer is None or person is None:
            claim.skip_reason = "customer not found"
        elif not allowed[(delivery.purpose, delivery.channel)].get(customer.id, False):
            claim.skip_reason = f"no consent for {delivery.purpose} on {delivery.channel}"
        else:
            delivery.address = selectors.customer_address(
                customer=customer, channel=delivery.channel, identities=person.identities
            )
            if not delivery.address:
                claim.skip_reason = f"no {delivery.channel} address"
    dead = selectors.addresses_undeliverable(
        pairs=[(claim.delivery.channel, claim.delivery.address) for claim in claims if not claim.skip_reason]
    )
    for claim in claims:
        if claim.skip_reason:
            continue
        if (claim.delivery.channel, claim.delivery.address) in dead:
            claim.skip_reason = f"{claim.delivery.channel} address is undeliverable (bounced)"
        else:
            claim.skip_reason = _policy_refusal(claim.delivery)
    return claims


def customers_live(*, customer_ids: set[UUID]) -> dict[UUID, Customer]:
    """Each id's live customer (merged_into followed), in one query unless some were merged."""
    found = {customer.id: customer for customer in Customer.objects.filter(id__in=list(customer_ids))}
    return {
        cid: (customer_live(customer) if customer.merged_into_id is not None else customer)
        for cid, customer in found.items()
    }


def _policy_refusal(delivery: Delivery) -> str:
    """The contact policy again, at send time: why this delivery may not go now, or "".

    Messages of one customer are claimed one at a time (a transaction-scoped advisory lock on
    the customer) so two workers cannot both take the last slot of a cap. A refused delivery is
    skipped, not held: holding is the journey's decision (contact_check's retry_at on a timer),
    and a message that waited for the morning may no longer be worth sending."""
    if delivery.purpose in contact.EXEMPT_PURPOSES:
        return ""
    if selectors.contact_policy().caps:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", [f"contact:{delivery.customer_id}"])
    verdict = selectors.contact_verdicts(
        customer_ids=[delivery.customer_id],
        channel=delivery.channel,
        purpose=delivery.purpose,
        priority=delivery.priority,
        at=timezone.now(),
        at_send=True,
        exclude=delivery.id,
    )[delivery.customer_id]
    if verdict.allowed:
        return ""
    retry = f"; allowed again at {verdict.retry_at.isoformat()}" if verdict.retry_at else ""
    return f"{POLICY_REASON_PREFIX}{verdict.reason}: {verdict.detail}{retry}"


POLICY_REASON_PREFIX = "contact policy "


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


_Outcome = tuple[_Claim, str, str, Exception | None]  # claim, status or "", message id, error
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


def _send_one(claim: _Claim) -> _Outcome:
    delivery = claim.delivery
    outgoing = Outgoing(
        delivery_id=str(delivery.id),
        idempotency_key=delivery.idempotency_key,
        address=delivery.address,
        content=delivery.content,
        timeout=settings.CHANNELS_SEND_TIMEOUT_SECONDS,
    )
    try:
        provider, message_id = _send(delivery, outgoing)
    except SendError as error:
        return claim, "", "", error
    delivery.provider = provider
    return claim, DeliveryStatus.SENT, message_id[:200], None


def _send_all(claims: list[_Claim]) -> Iterator[list[_Outcome]]:
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


def _record(outcomes: list[_Outcome]) -> dict[UUID, AttemptResult]:
    """Write what the sends came to: final statuses and their outcome events in one transaction
    (no outcome without its event), the retried and the parked back to queued."""
    now = timezone.now()
    results: dict[UUID, AttemptResult] = {}
    finals: list[tuple[_Claim, str, str]] = []  # claim, status, reason
    requeue: list[tuple[_Claim, int, str]] = []  # claim, attempts to give back, reason
    retrying: list[str] = []
    for claim, status, message_id, error in outcomes:
        delivery = claim.delivery
        if status == DeliveryStatus.SENT:
            delivery.provider_message_id = message_id
            finals.append((claim, DeliveryStatus.SENT, ""))
            results[delivery.id] = AttemptResult(status=DeliveryStatus.SENT)
        elif status == DeliveryStatus.SKIPPED:
            finals.append((claim, DeliveryStatus.SKIPPED, claim.skip_reason))
            results[delivery.id] = AttemptResult(status=DeliveryStatus.SKIPPED)
        elif isinstance(error, PermanentError):
            if isinstance(error, AddressRejected) and delivery.address:
                UndeliverableAddress.objects.update_or_create(
                    channel=delivery.channel, address=delivery.address[:512], defaults={"reason": error.reason[:2000]}
                )
            finals.append((claim, DeliveryStatus.FAILED, error.reason))
            results[delivery.id] = AttemptResult(status=DeliveryStatus.FAILED)
        elif isinstance(error, BreakersOpen):
            # Refused by open breakers, nothing was sent: the attempt does not count and the
            # delivery waits for the half-open trial (dead after CHANNELS_MAX_DEFER_SECONDS since
            # it was queued). The address is kept so the next try sees the breakers are still
            # open before claiming.
            waited = (now - delivery.queued_at).total_seconds()
            if waited > settings.CHANNELS_MAX_DEFER_SECONDS:
                finals.append((claim, DeliveryStatus.DEAD, f"providers unavailable for {int(waited)}s: {error.reason}"))
                results[delivery.id] = AttemptResult(status=DeliveryStatus.DEAD)
            else:
                requeue.append((claim, 1, error.reason))
                results[delivery.id] = AttemptResult(DeliveryStatus.QUEUED, retry_in=_breaker_delay(error.wait))
        elif isinstance(error, TransientError):
            if delivery.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
                reason = f"gave up after {delivery.attempts} attempts: {error.reason}"
                finals.append((claim, DeliveryStatus.DEAD, reason))
                results[delivery.id] = AttemptResult(status=DeliveryStatus.DEAD)
            else:
                # A non-empty last_error also marks it as tried: only its retry task takes it.
                requeue.append((claim, 0, error.reason or "transient failure"))
                retrying.append(delivery.channel)
                delay = backoff_seconds(
                    delivery.attempts,
                    base=settings.CHANNELS_RETRY_BASE_SECONDS,
                    cap=settings.CHANNELS_RETRY_MAX_SECONDS,
                    retry_after=error.retry_after,
                )
                results[delivery.id] = AttemptResult(status=DeliveryStatus.QUEUED, retry_in=delay)
        else:
            raise AssertionError(f"unexpected send outcome: {error!r}")
    if requeue:
        _write(
            [
                _Row(claim.delivery, DeliveryStatus.QUEUED, reason, given_back=back, finished=False)
                for claim, back, reason in requeue
            ],
            now,
        )
    for channel in retrying:
        metrics.DELIVERIES.labels(channel=channel, provider="", status="retrying").inc()
    if finals:
        _finish_many(finals, now)
    return results


@dataclass(frozen=True, slots=True)
class _Row:
    delivery: Delivery
    status: str
    error: str
    given_back: int = 0
    finished: bool = True


# One statement of one shape whatever the number of rows (arrays, not a VALUES list), so the
# driver parses it once per process.
_WRITE_SQL = (
    f"UPDATE {_TABLE} AS d SET status = v.status, attempts = d.attempts - v.given_back, "  # noqa: S608
    "last_error = v.last_error, address = v.address, provider = v.provider, "
    "provider_message_id = v.provider_message_id, sent_at = v.sent_at, finished_at = v.finished_at, "
    "updated_at = %s FROM unnest(%s::uuid[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::timestamptz[], %s::timestamptz[]) AS v(id, status, given_back, last_error, address, provider, "
    "provider_message_id, sent_at, finished_at) WHERE d.id = v.id AND d.status = 'sending' RETURNING d.id"
)


def _write(rows: list[_Row], now: datetime) -> set[UUID]:
    """Move claimed deliveries on in one statement; only those still "sending" (ours) change.
    Returns the ids written."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for row in rows:
        delivery = row.delivery
        if row.finished:
            delivery.status = row.status
            delivery.last_error = row.error[:2000]
            delivery.finished_at = now
            if row.status == DeliveryStatus.SENT:
                delivery.sent_at = now
        values = (
            delivery.id,
            row.status,
            row.given_back,
            row.error[:2000],
            delivery.address[:512],
            delivery.provider,
            delivery.provider_message_id,
            delivery.sent_at,
            delivery.finished_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(_WRITE_SQL, [now, *columns])
        return {row[0] for row in cursor.fetchall()}


def _finish_many(finals: list[tuple[_Claim, str, str]], now: datetime) -> None:
    """The final statuses and their outcome events commit together: no outcome without its event,
    one ingestion call for the whole wave."""
    with transaction.atomic():
        written = _write([_Row(claim.delivery, status, reason) for claim, status, reason in finals], now)
        messages = [
            _outcome_message(
                delivery=claim.delivery,
                status=status,
                reason=reason,
                at=now,
                customer=claim.person.customer,
                identities=claim.person.identities,
            )
            for claim, status, reason in finals
            if claim.delivery.id in written and claim.person is not None and status in OUTCOME_EVENTS
        ]
        if messages:
            event_ingest(source=system_source(), raw_messages=messages, call_type="track", received_at=now)
    _early_reports_apply(
        [
            claim.delivery
            for claim, status, _ in finals
            if status == DeliveryStatus.SENT and claim.delivery.id in written
        ]
    )
    for claim, status, _ in finals:
        delivery = claim.delivery
        metrics.DELIVERIES.labels(channel=delivery.channel, provider=delivery.provider, status=status).inc()
    if len(finals) == 1:
        delivery, status = finals[0][0].delivery, finals[0][1]
        observability.annotate(
            delivery_id=str(delivery.id), customer_id=str(delivery.customer_id), channel=delivery.channel, status=status
        )


def _finish(delivery: Delivery, status: str, *, error: str = "") -> None:
    """One delivery's final status and its outcome event (the sweeper's dead ones)."""
    customer = customer_get(customer_id=delivery.customer_id)
    person = _Person(customer, selectors.customer_identities(customer=customer)) if customer is not None else None
    _finish_many([(_Claim(delivery, "", person), status, error)], timezone.now())


# --- deliveries stuck in "sending" after a worker crash ----------------------------------------


@dataclass(frozen=True, slots=True)
class SweepResult:
    requeued: list[str]
    dead: list[str]


def deliveries_stuck_sweep(*, older_than: float, batch: int = 500) -> SweepResult:
    """Deliveries claimed ("sending") longer ago than `older_than` seconds belong to a worker
    that died mid-send: whether the provider took the message is unknown. Those whose provider
    deduplicates by our idempotency key (CHANNELS_SWEEP_RESEND_CHANNELS: Twilio's
    I-Twilio-Idempotency-Token, the webhook's Idempotency-Key) are queued again and re-sent with
    the same key; the others (SMTP, FCM accept no key) are dead with the reason rather than risk
    a duplicate, and so is one that has used up its attempts (a message that kills its worker).
    Rows are taken FOR UPDATE SKIP LOCKED, so two sweepers never take the same one, and the send
    task claims under a row lock, so a re-enqueued delivery is sent by one worker only."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    requeued: list[str] = []
    dead: list[Delivery] = []
    with transaction.atomic():
        stuck = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.SENDING, updated_at__lt=cutoff)
            .order_by("updated_at")[:batch]
        )
        for delivery in stuck:
            if (
                delivery.channel in settings.CHANNELS_SWEEP_RESEND_CHANNELS
                and delivery.attempts < settings.CHANNELS_MAX_ATTEMPTS
            ):
                requeued.append(str(delivery.id))
            else:
                dead.append(delivery)
        if requeued:
            Delivery.objects.filter(id__in=requeued).update(
                status=DeliveryStatus.QUEUED,
                last_error="worker lost mid-send; re-sent with the same idempotency key",
                updated_at=timezone.now(),
            )
            from channels.tasks import send_delivery

            for delivery_id in requeued:
                # A retry: it carries a last_error, which the task `deliver` enqueued leaves alone.
                transaction.on_commit(partial(send_delivery.apply_async, (delivery_id,), {"retry": True}))
    for delivery in dead:
        reason = (
            f"worker lost mid-send after {delivery.attempts} attempts"
            if delivery.channel in settings.CHANNELS_SWEEP_RESEND_CHANNELS
            else f"worker lost mid-send; {delivery.channel} providers take no idempotency key, "
            "so it is not re-sent (it may or may not have arrived)"
        )
        with transaction.atomic():
            # Still stuck? A late worker may have finished it since the sweep's transaction.
            if Delivery.objects.select_for_update().filter(id=delivery.id, status=DeliveryStatus.SENDING).exists():
                _finish(delivery, DeliveryStatus.DEAD, error=reason)
    return SweepResult(requeued=requeued, dead=[str(delivery.id) for delivery in dead])


def deliveries_queued_sweep(*, older_than: float, batch: int = 500) -> list[str]:
    """Deliveries still "queued" `older_than` seconds after their last change lost their task
    (the broker restarted, or the process died between commit and enqueue): enqueue a task for
    each again and touch them, so the next sweep leaves them alone while it runs. A task that
    was only late is harmless: the claim lets one of the two send it."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    with transaction.atomic():
        lost = [
            str(delivery_id)
            for delivery_id in Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.QUEUED, updated_at__lt=cutoff)
            .order_by("updated_at")
            .values_list("id", flat=True)[:batch]
        ]
        if lost:
            Delivery.objects.filter(id__in=lost).update(updated_at=timezone.now())
            from channels.tasks import send_delivery

            for delivery_id in lost:
                transaction.on_commit(partial(send_delivery.apply_async, (delivery_id,), {"retry": True}))
    return lost


# --- outcome events --------------------------------------------------------------------------


def system_source() -> SourceInfo:
    """The source Throughline's own events (message outcomes) are ingested under; created once."""
    return profile_services.system_source(name=SYSTEM_SOURCE_NAME)


def outcome_record(
    *,
    delivery: Delivery,
    status: str,
    reason: str = "",
    at: datetime | None = None,
    customer: Customer | None = None,
    identities: selectors.Identities | None = None,
) -> None:
    """Put a delivery outcome on the customer's profile as a canonical track event; the
    messageId is derived from delivery and outcome, so recording it twice stores it once.
    `customer` and `identities`, when the caller has them, spare reading them again."""
    if status not in OUTCOME_EVENTS:
        return
    if customer is None:
        customer = customer_get(customer_id=delivery.customer_id)
        identities = None
    if customer is None:
        return
    when = at or timezone.now()
    message = _outcome_message(
        delivery=delivery, status=status, reason=reason, at=when, customer=customer, identities=identities
    )
    event_ingest(source=system_source(), raw_messages=[message], call_type="track", received_at=timezone.now())


def _outcome_message(
    *,
    delivery: Delivery,
    status: str,
    reason: str,
    at: datetime,
    customer: Customer,
    identities: selectors.Identities | None,
) -> dict[str, Any]:
    return {
        "type": "track",
        "event": OUTCOME_EVENTS[status],
        "messageId": f"delivery:{delivery.id}:{status}",
        "timestamp": at.isoformat(),
        "properties": {
            "delivery_id": str(delivery.id),
            "channel": delivery.channel,
            "provider": delivery.provider,
            "status": status,
            "attempts": delivery.attempts,
            **({"reason": reason} if reason else {}),
            **_skip_properties(status, reason),
        },
        **selectors.customer_ids_for_message(customer=customer, identities=identities),
    }


def _skip_properties(status: str, reason: str) -> dict[str, Any]:
    """A skipped delivery says so, and which rule of the contact policy refused it, so a journey
    can tell "not sent, by policy" from a provider failure."""
    if status != DeliveryStatus.SKIPPED:
        return {}
    properties: dict[str, Any] = {"skipped": True}
    if reason.startswith(POLICY_REASON_PREFIX):
        properties["policy"] = reason[len(POLICY_REASON_PREFIX) :].split(":", 1)[0]
    return properties


# --- the contact policy ----------------------------------------------------------------------


def contact_policy_set(
    *,
    caps: list[dict[str, Any]] | None = None,
    quiet_start: Any = None,
    quiet_end: Any = None,
    fallback_timezone: str = "UTC",
    high_priority_bypasses_caps: bool = True,
) -> ContactPolicy:
    """Replace the workspace's contact policy (validated); this process sees it at once, others
    within CHANNELS_CONTACT_POLICY_REFRESH_SECONDS."""
    try:
        rules = contact.parse_caps(caps or [])
    except contact.PolicyError as error:
        raise BadRequest(str(error), code="invalid_policy") from None
    if not contact.valid_zone(fallback_timezone):
        raise BadRequest("fallback_timezone is not a known IANA time zone", code="invalid_policy")
    if (quiet_start is None) != (quiet_end is None):
        raise BadRequest("set both ends of the quiet hours, or neither", code="invalid_policy")
    row, _ = ContactPolicy.objects.update_or_create(
        id=ContactPolicy.SINGLETON_ID,
        defaults={
            "caps": contact.caps_to_json(rules),
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
            "fallback_timezone": fallback_timezone,
            "high_priority_bypasses_caps": high_priority_bypasses_caps,
        },
    )
    selectors.contact_policy_forget()
    return row


# --- provider status reports ------------------------------------------------------------------


def delivery_outcomes_apply(*, outcomes: list[Outcome], source: SourceInfo) -> list[str]:
    """Apply email provider reports: delivered/bounced move the delivery on, a bounce marks the
    address undeliverable, an unsubscribe or spam report denies email consent. Idempotent."""
    changed: list[str] = []
    for outcome in outcomes:
        delivery = _delivery_for(outcome.delivery_id)
        if outcome.kind == DELIVERED and delivery is not None:
            Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENT).update(
                status=DeliveryStatus.DELIVERED, updated_at=timezone.now()
            )
        elif outcome.kind in UNDELIVERABLE:
            if delivery is not None:
                Delivery.objects.filter(
                    id=delivery.id, status__in=[DeliveryStatus.SENT, DeliveryStatus.DELIVERED]
                ).update(
                    status=DeliveryStatus.FAILED,
                    last_error=f"{outcome.kind}: {outcome.reason}",
                    updated_at=timezone.now(),
                )
            address = (delivery.address if delivery is not None else "") or outcome.email.strip().lower()
            if address:
                UndeliverableAddress.objects.update_or_create(
                    channel=DeliveryChannel.EMAIL,
                    address=address,
                    defaults={"reason": f"{outcome.kind}: {outcome.reason}"},
                )
        elif outcome.kind in OPT_OUT:
            customer = (
                customer_get(customer_id=delivery.customer_id)
                if delivery is not None
                else customer_find(kind="email", value=outcome.email)
            )
            if customer is not None:
                consent_set(
                    customer_id=customer.id,
                    choices=[
                        ConsentChoice(purpose, "email", "denied")
                        for purpose in settings.CHANNELS_EMAIL_OPT_OUT_PURPOSES
                    ],
                    origin="webhook",
                    actor=f"webhook:sendgrid:{source.id}",
                    source_id=source.id,
                    source_label=source.name,
                )
                changed.append(f"{customer.id}: email denied ({outcome.kind})")
    return changed


def delivery_status_report(
    *, channel: str, provider_message_id: str, outcome: str, reason: str = "", dead_address: bool = False
) -> Delivery | None:
    """A provider's report on a message it took (delivered or failed): move the delivery on and
    record the outcome event in one transaction. Idempotent: a report seen before, or one that
    arrives after a later state (a "failed" after "delivered" is kept as delivered, never
    downgraded), changes nothing and its event is stored once (messageId per delivery and status).
    `dead_address` marks the address undeliverable (a number that cannot receive SMS)."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update()
            .filter(channel=channel, provider_message_id=provider_message_id)
            .order_by("-created_at")
            .first()
        )
        if delivery is None:
            _report_early(channel, provider_message_id, outcome, reason, dead_address)
            return None
        if outcome == DeliveryStatus.DELIVERED and delivery.status == DeliveryStatus.SENT:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.save(update_fields=["status", "updated_at"])
            outcome_record(delivery=delivery, status=DeliveryStatus.DELIVERED)
        elif outcome == DeliveryStatus.FAILED and delivery.status == DeliveryStatus.SENT:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = reason[:2000]
            delivery.save(update_fields=["status", "last_error", "updated_at"])
            outcome_record(delivery=delivery, status=DeliveryStatus.FAILED, reason=reason)
        if dead_address and delivery.address:
            UndeliverableAddress.objects.update_or_create(
                channel=channel, address=delivery.address, defaults={"reason": reason[:2000]}
            )
    return delivery


# How long a status report for a message id not recorded yet waits for its send to record it.
EARLY_REPORT_SECONDS = 600


def _report_early(channel: str, provider_message_id: str, outcome: str, reason: str, dead_address: bool) -> None:
    """A report can beat the send's own write: the provider answers the send with the message id,
    then reports on it (Twilio's callback for a failed number comes within milliseconds) before
    the sending worker has recorded that id. Kept for a while; the send applies it when it
    records the id (_early_reports_apply)."""
    if not tl_redis.is_configured() or not provider_message_id:
        return
    report = orjson.dumps({"outcome": outcome, "reason": reason, "dead_address": dead_address})
    with contextlib.suppress(RedisError):
        tl_redis.client().set(keys.status_early(channel, provider_message_id), report, ex=EARLY_REPORT_SECONDS)


def _early_reports_apply(deliveries: list[Delivery]) -> None:
    """Apply the status reports that arrived before these sent deliveries recorded their
    provider message ids: one Redis round trip for the wave."""
    sent = [d for d in deliveries if d.provider_message_id and d.channel in EARLY_REPORT_CHANNELS]
    if not sent or not tl_redis.is_configured():
        return
    names = [keys.status_early(d.channel, d.provider_message_id) for d in sent]
    try:
        reports = tl_redis.client().mget(names)
    except RedisError:
        return
    for delivery, name, report in zip(sent, names, reports, strict=True):
        if report is None:
            continue
        found = orjson.loads(report)
        delivery_status_report(
            channel=delivery.channel,
            provider_message_id=delivery.provider_message_id,
            outcome=found["outcome"],
            reason=found["reason"],
            dead_address=found["dead_address"],
        )
        with contextlib.suppress(RedisError):
            tl_redis.client().delete(name)


# Channels whose providers report on a message by the id they answered the send with.
EARLY_REPORT_CHANNELS = frozenset({DeliveryChannel.SMS})


def _delivery_for(value: str) -> Delivery | None:
    try:
        return Delivery.objects.filter(id=UUID(value)).first() if value else None
    except ValueError:
        return None


# --- webhook secrets -------------------------------------------------------------------------


def fernet() -> Fernet:
    key = hashlib.sha256(settings.CHANNELS_SECRETS_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def webhook_secret_set(*, source_id: UUID, provider: str, secret: str) -> WebhookSecret:
    """Store (or replace) a source's inbound webhook secret, encrypted."""
    if provider not in WebhookProvider.values:
        raise BadRequest(f"provider must be one of {WebhookProvider.values}", code="invalid_provider")
    if not secret:
        raise BadRequest("secret must not be empty", code="invalid_secret")
    row, _ = WebhookSecret.objects.update_or_create(
        source_id=source_id, provider=provider, defaults={"secret_encrypted": fernet().encrypt(secret.encode())}
    )
    return row


def webhook_secret_reveal(*, source_id: UUID, provider: str) -> str:
    encrypted = (
        WebhookSecret.objects.filter(source_id=source_id, provider=provider)
        .values_list("secret_encrypted", flat=True)
        .first()
    )
    if encrypted is None:
        raise NotFound("no such webhook")
    return fernet().decrypt(bytes(encrypted)).decode()
