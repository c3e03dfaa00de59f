"""Writes of the channels app: `deliver`, one send attempt, outcome events, webhook secrets."""

import base64
import hashlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import pybreaker
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from channels import contact, selectors
from channels.adapters.sendgrid import OPT_OUT, UNDELIVERABLE, Outcome
from channels.breaker import any_open, breaker_for, destination_host, open_for
from channels.models import (
    ContactPolicy,
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    UndeliverableAddress,
    WebhookProvider,
    WebhookSecret,
)
from channels.policy import AddressRejected, BreakersOpen, PermanentError, TransientError, backoff_seconds
from channels.senders import SENDERS, Outgoing, Sender
from config.core import metrics, observability
from config.core.errors import BadRequest, NotFound
from profiles import services as profile_services
from profiles.contracts import SourceInfo
from profiles.ingest import event_ingest
from profiles.models import Customer
from profiles.privacy import conventions
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.selectors import consent_allows
from profiles.privacy.services import consent_set
from profiles.selectors import customer_find, customer_get

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
    from channels.tasks import send_delivery

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
                queued_at=timezone.now(),
            )
            # After commit, in the caller's trace (a journey step routing an event): the send
            # joins the event's trace even though the commit happens outside the step.
            observability.on_commit_in_context(send_delivery.delay, str(delivery.id))
    except IntegrityError:
        # A concurrent call with the same key won the insert: that one is the delivery.
        return Delivery.objects.get(idempotency_key=idempotency_key)
    return delivery


# --- one send attempt, as the task runs it ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: str
    retry_in: float | None = None


def delivery_attempt(*, delivery_id: UUID) -> AttemptResult:
    """Claim a queued delivery, check consent and address, send through the channel's providers
    (skipping any whose breaker is open), then record the outcome. A delivery that is not
    queued (sent, sending elsewhere, finished) is left alone, so a redelivered task never sends
    twice."""
    wait = _breakers_wait(delivery_id)
    if wait is not None:
        # Every provider for it is known down in this process: wait for the half-open trial
        # without a write, an attempt, or a request to the provider.
        return AttemptResult(status=DeliveryStatus.QUEUED, retry_in=wait)
    return _attempt(delivery_id)


def _attempt(delivery_id: UUID) -> AttemptResult:
    claimed = _claim(delivery_id)
    if claimed is None:
        status = Delivery.objects.filter(id=delivery_id).values_list("status", flat=True).first()
        return AttemptResult(status=status or "missing")
    delivery, skip_reason, person = claimed
    if skip_reason:
        _finish(delivery, DeliveryStatus.SKIPPED, error=skip_reason, person=person)
        return AttemptResult(status=DeliveryStatus.SKIPPED)
    outgoing = Outgoing(
        delivery_id=str(delivery.id),
        idempotency_key=delivery.idempotency_key,
        address=delivery.address,
        content=delivery.content,
        timeout=settings.CHANNELS_SEND_TIMEOUT_SECONDS,
    )
    try:
        provider, message_id = _send(delivery, outgoing)
    except PermanentError as error:
        return _failed(delivery, error, person)
    except BreakersOpen as error:
        return _parked(delivery, error, person)
    except TransientError as error:
        return _retry_later(delivery, error, person)
    delivery.provider = provider
    delivery.provider_message_id = message_id[:200]
    _finish(delivery, DeliveryStatus.SENT, person=person)
    return AttemptResult(status=DeliveryStatus.SENT)


def _failed(delivery: Delivery, error: PermanentError, person: "_Person | None") -> AttemptResult:
    if isinstance(error, AddressRejected) and delivery.address:
        UndeliverableAddress.objects.update_or_create(
            channel=delivery.channel, address=delivery.address[:512], defaults={"reason": error.reason[:2000]}
        )
    _finish(delivery, DeliveryStatus.FAILED, error=error.reason, person=person)
    return AttemptResult(status=DeliveryStatus.FAILED)


def _parked(delivery: Delivery, error: BreakersOpen, person: "_Person | None") -> AttemptResult:
    """Refused by open breakers, nothing was sent: the attempt does not count and the delivery
    waits for the half-open trial (dead after CHANNELS_MAX_DEFER_SECONDS since it was queued).
    The address is kept so the next try sees the breakers are still open before claiming."""
    waited = (timezone.now() - delivery.queued_at).total_seconds()
    if waited > settings.CHANNELS_MAX_DEFER_SECONDS:
        reason = f"providers unavailable for {int(waited)}s: {error.reason}"
        _finish(delivery, DeliveryStatus.DEAD, error=reason, person=person)
        return AttemptResult(status=DeliveryStatus.DEAD)
    Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.QUEUED,
        attempts=delivery.attempts - 1,
        address=delivery.address,
        last_error=error.reason[:2000],
        updated_at=timezone.now(),
    )
    return AttemptResult(status=DeliveryStatus.QUEUED, retry_in=_breaker_delay(error.wait))


def _retry_later(delivery: Delivery, error: TransientError, person: "_Person | None") -> AttemptResult:
    if delivery.attempts >= settings.CHANNELS_MAX_ATTEMPTS:
        reason = f"gave up after {delivery.attempts} attempts: {error.reason}"
        _finish(delivery, DeliveryStatus.DEAD, error=reason, person=person)
        return AttemptResult(status=DeliveryStatus.DEAD)
    Delivery.objects.filter(id=delivery.id, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.QUEUED,
        address=delivery.address,
        last_error=error.reason[:2000],
        updated_at=timezone.now(),
    )
    metrics.DELIVERIES.labels(channel=delivery.channel, provider="", status="retrying").inc()
    delay = backoff_seconds(
        delivery.attempts,
        base=settings.CHANNELS_RETRY_BASE_SECONDS,
        cap=settings.CHANNELS_RETRY_MAX_SECONDS,
        retry_after=error.retry_after,
    )
    return AttemptResult(status=DeliveryStatus.QUEUED, retry_in=delay)


@dataclass(frozen=True, slots=True)
class _Person:
    """The customer a send is for and their identities, read once at the claim and reused for
    the address and the outcome event (each read is a round trip on the hot path)."""

    customer: Customer
    identities: selectors.Identities


_DELIVERY_COLUMNS = [field.column for field in Delivery._meta.concrete_fields]
# The claim as one statement: lock the row, check it is still queued and take it, where an
# ORM select_for_update + save costs two statements and most of a send's ORM CPU.
_CLAIM_SQL = (
    f"UPDATE {Delivery._meta.db_table} SET status = %s, attempts = attempts + 1, updated_at = %s "  # noqa: S608
    f"WHERE id = %s AND status = %s RETURNING {', '.join(_DELIVERY_COLUMNS)}"
)


def _breaker_delay(wait: float) -> float:
    # Spread the retries of the many deliveries parked on one outage over a second past the trial.
    return max(wait, 0.05) + random.uniform(0, 1.0)  # noqa: S311 - jitter, not a secret


def _breakers_wait(delivery_id: UUID) -> float | None:
    """Seconds to wait when every provider of this queued delivery has an open breaker in this
    process, else None. Costs nothing while no breaker is open."""
    if not any_open():
        return None
    row = (
        Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.QUEUED)
        .values_list("channel", "fallback", "address", "queued_at")
        .first()
    )
    if row is None:
        return None
    channel, fallback, address, queued_at = row
    if (timezone.now() - queued_at).total_seconds() > settings.CHANNELS_MAX_DEFER_SECONDS:
        return None  # waited long enough: the claim gives it up
    names = selectors.providers_for(channel=channel, fallback=fallback)
    waits = []
    for name in names:
        config = settings.CHANNELS_PROVIDERS[name]
        if not config.get("base_url") and not config.get("host") and not address:
            return None  # the destination is the address, not known before the first claim
        waits.append(open_for(name, destination_host(config, address)))
    if not waits or min(waits) <= 0:
        return None
    return _breaker_delay(min(waits))


def _claim(delivery_id: UUID) -> tuple[Delivery, str, _Person | None] | None:
    """Take a queued delivery (status sending) and check, in the same transaction, whether it may
    go: the customer, consent, the address, the contact policy. The address is written when the
    attempt finishes."""
    with transaction.atomic():
        # raw() applies the fields' converters (the JSON content) to the returned row.
        claimed = list(
            Delivery.objects.raw(
                _CLAIM_SQL, [DeliveryStatus.SENDING, timezone.now(), delivery_id, DeliveryStatus.QUEUED]
            )
        )
        if not claimed:
            return None
        delivery = claimed[0]
        skip_reason = ""
        person = None
        customer = customer_get(customer_id=delivery.customer_id)
        if customer is None:
            skip_reason = "customer not found"
        elif not consent_allows(customer_id=customer.id, purpose=delivery.purpose, channel=delivery.channel):
            skip_reason = f"no consent for {delivery.purpose} on {delivery.channel}"
        else:
            person = _Person(customer, selectors.customer_identities(customer=customer))
            delivery.address = selectors.customer_address(
                customer=customer, channel=delivery.channel, identities=person.identities
            )
            if not delivery.address:
                skip_reason = f"no {delivery.channel} address"
            elif selectors.address_undeliverable(channel=delivery.channel, address=delivery.address):
                skip_reason = f"{delivery.channel} address is undeliverable (bounced)"
            else:
                skip_reason = _policy_refusal(delivery)
    return delivery, skip_reason, person


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
            return name, breaker.call(_recording(SENDERS[config["kind"]], failures), config, outgoing)
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


def _recording(sender: Sender, failures: list[TransientError]) -> Sender:
    def send(config: dict[str, str], outgoing: Outgoing) -> str:
        try:
            return sender(config, outgoing)
        except TransientError as error:
            failures.append(error)
            raise

    return send


def _finish(delivery: Delivery, status: str, *, error: str = "", person: _Person | None = None) -> None:
    """The final status and its outcome event commit together: no outcome without its event."""
    now = timezone.now()
    delivery.status = status
    delivery.last_error = error[:2000]
    delivery.finished_at = now
    if status == DeliveryStatus.SENT:
        delivery.sent_at = now
    with transaction.atomic():
        delivery.save(
            update_fields=[
                "status",
                "last_error",
                "finished_at",
                "sent_at",
                "provider",
                "provider_message_id",
                "address",
                "updated_at",
            ]
        )
        if person is not None:
            outcome_record(
                delivery=delivery, status=status, reason=error, customer=person.customer, identities=person.identities
            )
        else:
            outcome_record(delivery=delivery, status=status, reason=error)
    metrics.DELIVERIES.labels(channel=delivery.channel, provider=delivery.provider, status=status).inc()
    observability.annotate(
        delivery_id=str(delivery.id), customer_id=str(delivery.customer_id), channel=delivery.channel, status=status
    )


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
                transaction.on_commit(partial(send_delivery.delay, delivery_id))
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
    name = OUTCOME_EVENTS.get(status)
    if name is None:
        return
    if customer is None:
        customer = customer_get(customer_id=delivery.customer_id)
        identities = None
    if customer is None:
        return
    when = at or timezone.now()
    message: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": f"delivery:{delivery.id}:{status}",
        "timestamp": when.isoformat(),
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
    event_ingest(source=system_source(), raw_messages=[message], call_type="track", received_at=timezone.now())


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
        if outcome.kind == "delivered" and delivery is not None:
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
