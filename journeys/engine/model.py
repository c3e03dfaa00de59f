"""The engine's own view of a journey and an enrollment, and the World it acts on. Pure: no
Django. The real world (journeys/world.py) keeps these in PostgreSQL and acts through
the channels contract; the simulated world (journeys/simulation.py) keeps them in memory on
a virtual clock."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from journeys.conditions import Condition, EvalContext, compile_condition

ACTIVE = "active"
COMPLETED = "completed"
EXITED = "exited"
FAILED = "failed"

# Outcome events the channels app records for every delivery (properties.delivery_id).
OUTCOME_SENT = "Message Sent"
OUTCOME_DELIVERED = "Message Delivered"
OUTCOME_FAILED = "Message Failed"
OUTCOME_EVENTS = frozenset({OUTCOME_SENT, OUTCOME_DELIVERED, OUTCOME_FAILED})
SEGMENT_ENTERED = "Segment Entered"


def duration(spec: Mapping[str, int] | None) -> timedelta:
    spec = spec or {}
    return timedelta(
        days=spec.get("days", 0),
        hours=spec.get("hours", 0),
        minutes=spec.get("minutes", 0),
        seconds=spec.get("seconds", 0),
    )


@dataclass(frozen=True, slots=True)
class EventView:
    """An event as the engine sees it (trigger, awaited event, exit event, message outcome)."""

    id: int | None
    name: str
    type: str
    channel: str
    properties: Mapping[str, Any]
    timestamp: datetime
    customer_id: str

    def as_context(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "channel": self.channel,
            "properties": dict(self.properties),
            "timestamp": self.timestamp.isoformat(),
        }


@dataclass
class EnrollmentState:
    """One customer's pass through a journey version. The machine mutates it; the world stores it."""

    id: str
    journey: str
    version: str
    customer_id: str
    entered_at: datetime
    step: str = ""
    visit: int = 0
    status: str = ACTIVE
    waiting_for: dict[str, Any] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    converted: bool = False
    end_reason: str = ""
    ended_at: datetime | None = None


class StepFailed(Exception):
    """A world action could not be done for good (no identity to address, a refused message):
    the machine records it and ends the enrollment as failed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """The contact policy's answer for one message (mirrors channels' ContactVerdict)."""

    allowed: bool
    reason: str = ""
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookResult:
    ok: bool
    status: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class ExitRule:
    event: str | None
    condition: Condition | None
    converted: bool
    stops_matching: Condition | None


@dataclass(frozen=True)
class CompiledJourney:
    """A published version, compiled once: conditions are closures, durations are timedeltas."""

    key: str
    version_id: str
    definition: Mapping[str, Any]
    trigger_condition: Condition | None
    exits: tuple[ExitRule, ...]
    # (step id, branch index) -> condition; (step id, -1) -> a wait_for_event's condition
    conditions: Mapping[tuple[str, int], Condition]
    needs: frozenset[str]

    @property
    def trigger(self) -> Mapping[str, Any]:
        trigger: Mapping[str, Any] = self.definition["trigger"]
        return trigger

    @property
    def steps(self) -> Mapping[str, Mapping[str, Any]]:
        steps: Mapping[str, Mapping[str, Any]] = self.definition["steps"]
        return steps

    @property
    def reentry(self) -> str:
        return str((self.definition.get("entry") or {}).get("reentry", "once"))

    @property
    def cooldown(self) -> timedelta:
        return duration((self.definition.get("entry") or {}).get("cooldown"))


def compile_journey(*, key: str, version_id: str, definition: Mapping[str, Any]) -> CompiledJourney:
    """Compile every condition of a (validated) definition once."""
    trigger = definition["trigger"]
    trigger_condition = compile_condition(trigger["condition"]) if "condition" in trigger else None
    exits = tuple(
        ExitRule(
            event=rule.get("event"),
            condition=compile_condition(rule["condition"]) if "condition" in rule else None,
            converted=bool(rule.get("converted", False)),
            stops_matching=compile_condition(rule["stops_matching"]) if "stops_matching" in rule else None,
        )
        for rule in definition.get("exit") or []
    )
    conditions: dict[tuple[str, int], Condition] = {}
    for step_id, step in definition["steps"].items():
        for index, branch in enumerate(step.get("branches") or []):
            conditions[(step_id, index)] = compile_condition(branch["condition"])
        if step["type"] == "wait_for_event" and "condition" in step:
            conditions[(step_id, -1)] = compile_condition(step["condition"])
    needs: set[str] = set()
    for condition in [
        trigger_condition,
        *conditions.values(),
        *(r.condition for r in exits),
        *(r.stops_matching for r in exits),
    ]:
        if condition is not None:
            needs |= condition.needs
    return CompiledJourney(
        key=key,
        version_id=version_id,
        definition=definition,
        trigger_condition=trigger_condition,
        exits=exits,
        conditions=conditions,
        needs=frozenset(needs),
    )


class World(Protocol):
    """What the machine acts on. Every method is called inside one advance of one enrollment."""

    def now(self) -> datetime: ...

    def context(self, enrollment: EnrollmentState, *, event: EventView | None, needs: frozenset[str]) -> EvalContext:
        """The condition context for this customer now (loading only the roots in `needs`)."""
        ...

    def template_context(self, enrollment: EnrollmentState, *, lazy: frozenset[str]) -> dict[str, Any]:
        """profile, event (the trigger), journey, and of `session` and `links` only those named
        in `lazy` (the content uses them; a link may cost a write, a resume token)."""
        ...

    def timezone(self, enrollment: EnrollmentState) -> str:
        """The customer's IANA zone (trait `timezone`), else the fallback zone."""
        ...

    def step_begin(self, enrollment: EnrollmentState, *, key: str, step: str, kind: str) -> bool:
        """Record that this step execution starts; False when `key` was already recorded (done)."""
        ...

    def step_end(
        self, enrollment: EnrollmentState, *, key: str, kind: str, outcome: str, detail: dict[str, Any]
    ) -> None: ...

    def channels_available(
        self, enrollment: EnrollmentState, *, channels: list[str], purpose: str
    ) -> dict[str, str | None]: ...

    def contact_check(self, enrollment: EnrollmentState, *, channel: str, purpose: str, priority: str) -> Verdict: ...

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
        """Hand a message to channels; returns the delivery id its outcome events carry."""
        ...

    def set_traits(self, enrollment: EnrollmentState, *, traits: dict[str, Any], key: str) -> None: ...

    def emit_event(self, enrollment: EnrollmentState, *, name: str, properties: dict[str, Any], key: str) -> None: ...

    def call_webhook(
        self, enrollment: EnrollmentState, *, url: str, body: dict[str, Any], key: str
    ) -> WebhookResult: ...

    def set_timer(self, enrollment: EnrollmentState, *, kind: str, due_at: datetime) -> None: ...

    def clear_timers(self, enrollment: EnrollmentState) -> None:
        """Drop the enrollment's unfired timers: it left the step they were for."""
        ...
