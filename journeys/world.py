"""The real World: the step machine's actions against PostgreSQL and the channels contract.

One `DbWorld` serves one chunk of work (a routing chunk, a timer batch, an API call) inside
its transaction; enrollments are locked (select_for_update) by the caller before the machine
touches them. History rows are inserted ON CONFLICT DO NOTHING on their key before the action
they record: a conflict means a redelivered task already did it.
"""

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels import contracts as channel_contracts
from config.core import metrics
from config.core.errors import ApplicationError
from journeys import contracts, selectors
from journeys.conditions import NO_HISTORY, EvalContext, EventHistory
from journeys.engine.model import EnrollmentState, EventView, StepFailed, Verdict, WebhookResult
from journeys.models import Enrollment, StepRun, Timer
from profiles.contracts import SourceInfo
from profiles.models import Customer

logger = logging.getLogger(__name__)

SYSTEM_SOURCE_NAME = "throughline-journeys"


class _Customer:
    """What is loaded about one customer during a chunk, each root once and only if needed."""

    __slots__ = ("computed", "consent", "history", "model", "segments", "session", "traits")

    def __init__(self) -> None:
        self.model: Customer | None = None
        self.traits: dict[str, Any] | None = None
        self.computed: dict[str, Any] | None = None
        self.segments: frozenset[str] | None = None
        self.consent: dict[str, dict[str, bool]] | None = None
        self.session: dict[str, Any] | None = None
        self.history: EventHistory | None = None


class DbWorld:
    def __init__(self, *, now: datetime | None = None) -> None:
        self._now = now
        self._customers: dict[str, _Customer] = {}
        self._pending: dict[str, int] = {}  # history key -> StepRun id, between begin and end

    # --- time and context ------------------------------------------------------------------
    def now(self) -> datetime:
        return self._now or timezone.now()

    def _customer(self, customer_id: str) -> _Customer:
        loaded = self._customers.get(customer_id)
        if loaded is None:
            loaded = self._customers[customer_id] = _Customer()
        if loaded.traits is None:
            loaded.model, loaded.traits = selectors.customer_traits(customer_id=UUID(customer_id))
        return loaded

    def forget(self, customer_id: str) -> None:
        """Drop what is cached about a customer (its traits changed)."""
        self._customers.pop(customer_id, None)

    def context(self, enrollment: EnrollmentState, *, event: EventView | None, needs: frozenset[str]) -> EvalContext:
        customer = self._customer(enrollment.customer_id)
        traits = customer.traits or {}
        if "computed" in needs and customer.computed is None:
            from profiles.computed_traits import computed_traits_of

            customer.computed = computed_traits_of(customer.model) if customer.model is not None else {}
        if "segments" in needs and customer.segments is None:
            customer.segments = selectors.customer_segments(customer_id=UUID(enrollment.customer_id))
        if "consent" in needs and customer.consent is None:
            customer.consent = selectors.customer_consent(customer=customer.model) if customer.model is not None else {}
        if "session" in needs and customer.session is None:
            customer.session = _session_state(enrollment.customer_id)
        if "history" in needs and customer.history is None:
            customer.history = _event_history(enrollment.customer_id)
        zone = traits.get("timezone")
        return EvalContext(
            now=self.now(),
            event=event.as_context() if event is not None else None,
            traits=traits,
            computed=customer.computed or {},
            segments=customer.segments or frozenset(),
            session=customer.session,
            consent=customer.consent or {},
            timezone=zone if isinstance(zone, str) and zone else None,
            fallback_timezone=settings.JOURNEYS_FALLBACK_TIMEZONE,
            customer_id=enrollment.customer_id,
            history=customer.history or NO_HISTORY,
        )

    def template_context(self, enrollment: EnrollmentState, *, lazy: frozenset[str]) -> dict[str, Any]:
        customer = self._customer(enrollment.customer_id)
        if "session" in lazy and customer.session is None:
            customer.session = _session_state(enrollment.customer_id)
        return {
            "profile": dict(customer.traits or {}),
            "event": enrollment.state.get("trigger") or {},
            "session": dict(customer.session or {}),
            "journey": {"key": enrollment.journey, "step": enrollment.step},
            "links": _links(enrollment.customer_id) if "links" in lazy else {},
        }

    def timezone(self, enrollment: EnrollmentState) -> str:
        zone = (self._customer(enrollment.customer_id).traits or {}).get("timezone")
        return zone if isinstance(zone, str) and zone else str(settings.JOURNEYS_FALLBACK_TIMEZONE)

    # --- history -------------------------------------------------------------------------------
    def step_begin(self, enrollment: EnrollmentState, *, key: str, step: str, kind: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO journeys_steprun (enrollment_id, key, step, kind, visit, at, outcome, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'running', '{}') ON CONFLICT (key) DO NOTHING RETURNING id",
                [enrollment.id, key, step, kind, enrollment.visit, self.now()],
            )
            row = cursor.fetchone()
        if row is None:
            return False
        self._pending[key] = row[0]
        return True

    def step_end(
        self, enrollment: EnrollmentState, *, key: str, kind: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        StepRun.objects.filter(id=self._pending.pop(key)).update(outcome=outcome, detail=detail)
        metrics.JOURNEY_STEPS.labels(journey=enrollment.journey, kind=kind, outcome=outcome).inc()

    # --- messages --------------------------------------------------------------------------------
    def channels_available(
        self, enrollment: EnrollmentState, *, channels: list[str], purpose: str
    ) -> dict[str, str | None]:
        return channel_contracts.channels_available(
            customer_id=UUID(enrollment.customer_id), channels=channels, purpose=purpose
        )

    def contact_check(self, enrollment: EnrollmentState, *, channel: str, purpose: str, priority: str) -> Verdict:
        verdict = channel_contracts.contact_check(
            customer_id=UUID(enrollment.customer_id), channel=channel, purpose=purpose, priority=priority, at=self.now()
        )
        return Verdict(allowed=verdict.allowed, reason=verdict.reason, retry_at=verdict.retry_at)

    def deliver(
        self,
        enrollment: EnrollmentState,
        *,
        channel: str,
        content: dict[str, Any],
        idempotency_key: str,
        purpose: str,
        priority: str,
    ) -> str:
        try:
            ref = channel_contracts.deliver(
                channel=channel,
                customer_id=UUID(enrollment.customer_id),
                content=content,
                idempotency_key=idempotency_key,
                purpose=purpose,
                priority=priority,
            )
        except ApplicationError as error:
            raise StepFailed(f"{error.code}: {error.detail}") from error
        return str(ref.id)

    # --- profile and the outside world -----------------------------------------------------------
    def set_traits(self, enrollment: EnrollmentState, *, traits: dict[str, Any], key: str) -> None:
        self._ingest(enrollment, {"type": "identify", "traits": traits}, key=key, call_type="identify")
        customer = self._customers.get(enrollment.customer_id)
        if customer is not None and customer.traits is not None:
            customer.traits = {**customer.traits, **traits}

    def emit_event(self, enrollment: EnrollmentState, *, name: str, properties: dict[str, Any], key: str) -> None:
        self._ingest(enrollment, {"type": "track", "event": name, "properties": properties}, key=key, call_type="track")

    def _ingest(self, enrollment: EnrollmentState, message: dict[str, Any], *, key: str, call_type: str) -> None:
        """Journeys' own identify/track through ingestion, like any source's; the messageId is
        the step's key, so a redelivered step stores nothing twice."""
        from profiles.ingest import event_ingest

        ids = selectors.customer_message_ids(customer_id=UUID(enrollment.customer_id))
        if not ids:
            raise StepFailed(f"customer {enrollment.customer_id} has no identity to address it by")
        event_ingest(
            source=system_source(),
            raw_messages=[{**message, **ids, "messageId": f"journey:{key}", "timestamp": self.now().isoformat()}],
            call_type=call_type,
            received_at=timezone.now(),
        )

    def call_webhook(self, enrollment: EnrollmentState, *, url: str, body: dict[str, Any], key: str) -> WebhookResult:
        """A signed POST (`Throughline-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`)
        with an Idempotency-Key header, so a receiver can drop the repeat a redelivered step sends."""
        payload = orjson.dumps(body)
        stamp = str(int(time.time()))
        secret = str(settings.JOURNEYS_WEBHOOK_SECRET).encode()
        signature = hmac.new(secret, stamp.encode() + b"." + payload, hashlib.sha256).hexdigest()
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked by the definition schema
            url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Throughline-Journeys/1",
                "Idempotency-Key": key,
                "Throughline-Signature": f"t={stamp},v1={signature}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.JOURNEYS_WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
                return WebhookResult(ok=200 <= response.status < 300, status=response.status)
        except urllib.error.HTTPError as error:
            return WebhookResult(ok=False, status=error.code, error=f"HTTP {error.code}")
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            return WebhookResult(ok=False, error=str(getattr(error, "reason", error))[:200])

    # --- timers ----------------------------------------------------------------------------------
    def set_timer(self, enrollment: EnrollmentState, *, kind: str, due_at: datetime) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO journeys_timer (enrollment_id, step, visit, kind, due_at, fired_at) "
                "VALUES (%s, %s, %s, %s, %s, NULL) ON CONFLICT (enrollment_id, step, visit, kind) "
                "DO UPDATE SET due_at = EXCLUDED.due_at, fired_at = NULL",
                [enrollment.id, enrollment.step, enrollment.visit, kind, due_at],
            )

    def clear_timers(self, enrollment: EnrollmentState) -> None:
        Timer.objects.filter(enrollment_id=enrollment.id, fired_at__isnull=True).delete()


def system_source() -> SourceInfo:
    """The source journeys' own identify and track calls are ingested under; created once."""
    from django.db import IntegrityError

    from profiles.services import source_create

    row = selectors.system_source_row(name=SYSTEM_SOURCE_NAME)
    if row is None:
        try:
            with transaction.atomic():
                row, _ = source_create(name=SYSTEM_SOURCE_NAME, channel="server")
        except IntegrityError:
            row = selectors.system_source_row(name=SYSTEM_SOURCE_NAME)
    assert row is not None
    return SourceInfo(
        id=row.id, name=row.name, channel=row.channel, enabled=True, identity_kinds=frozenset(row.identity_kinds or ())
    )


def _session_state(customer_id: str) -> dict[str, Any] | None:
    """The live session state orchestration provides; None (conditions see it missing) when
    its store is down, so a Redis outage does not stop journeys."""
    try:
        return contracts.session_for(UUID(customer_id))
    except Exception:
        logger.warning("journeys: session state unavailable for %s", customer_id, exc_info=True)
        return None


def _links(customer_id: str) -> dict[str, Any]:
    """Links such as the form's resume URL; a provider that fails leaves its link missing (and
    the message falls back to its default content)."""
    try:
        return dict(contracts.links_for(UUID(customer_id)))
    except Exception:
        logger.warning("journeys: links unavailable for %s", customer_id, exc_info=True)
        return {}


def _event_history(customer_id: str) -> EventHistory:
    from journeys.segments import DbEventHistory

    return DbEventHistory(UUID(customer_id))


def enrollment_state(row: Enrollment) -> EnrollmentState:
    return EnrollmentState(
        id=str(row.id),
        journey=row.journey.key if "journey" in row._state.fields_cache else str(row.journey_id),
        version=str(row.version_id),
        customer_id=str(row.customer_id),
        entered_at=row.entered_at,
        step=row.step,
        visit=row.visit,
        status=row.status,
        waiting_for=row.waiting_for,
        state=dict(row.state or {}),
        converted=row.converted,
        end_reason=row.end_reason,
        ended_at=row.ended_at,
    )


def enrollment_save(row: Enrollment, state: EnrollmentState) -> None:
    """Write the machine's changes back to the (locked) row; count how it ended."""
    ended = row.status == "active" and state.status != "active"
    row.step = state.step
    row.visit = state.visit
    row.status = state.status
    row.waiting_for = state.waiting_for
    row.state = state.state
    row.converted = state.converted
    row.end_reason = state.end_reason[:200]
    row.ended_at = state.ended_at
    row.save(
        update_fields=[
            "step",
            "visit",
            "status",
            "waiting_for",
            "state",
            "converted",
            "end_reason",
            "ended_at",
            "updated_at",
        ]
    )
    if ended:
        metrics.JOURNEY_EXITS.labels(journey=state.journey, status=state.status).inc()
