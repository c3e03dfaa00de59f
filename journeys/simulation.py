"""Simulation: a whole journey run in memory on a virtual clock, with no side effects.

The same step machine as real execution runs against `SimulatedWorld`, which records what
would have happened (the path, the messages, the timers, traits set, events emitted, webhooks
called, routes) instead of doing it. Message outcomes are what the caller says each channel
does (`outcomes`, default "delivered" for every channel) and arrive one second after the
send; a channel the customer cannot receive (`profile.unavailable`) is skipped, and a
contact policy (`profile.contact`) may hold or skip messages. Pure: no Django, no database.
"""

import heapq
import itertools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.conditions import EvalContext, ListEventHistory
from journeys.engine import machine
from journeys.engine.model import (
    ACTIVE,
    OUTCOME_DELIVERED,
    OUTCOME_FAILED,
    OUTCOME_SENT,
    EnrollmentState,
    EventView,
    Verdict,
    WebhookResult,
    compile_journey,
)

OUTCOME_DELAY = timedelta(seconds=1)
MAX_SIGNALS = 10_000


@dataclass
class SimulationResult:
    path: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    timers: list[dict[str, Any]] = field(default_factory=list)
    traits_set: list[dict[str, Any]] = field(default_factory=list)
    events_emitted: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    skipped_entries: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "messages": self.messages,
            "timers": self.timers,
            "traits_set": self.traits_set,
            "events_emitted": self.events_emitted,
            "webhooks": self.webhooks,
            "enrollments": self.enrollments,
            "skipped_entries": self.skipped_entries,
        }


class SimulatedWorld:
    """The World on a virtual clock: everything recorded, nothing done."""

    def __init__(
        self,
        *,
        profile: Mapping[str, Any],
        outcomes: Mapping[str, str],
        fallback_timezone: str,
        links: Mapping[str, Any],
    ):
        self.clock = datetime(1970, 1, 1, tzinfo=UTC)
        self.traits: dict[str, Any] = dict(profile.get("traits") or {})
        self.computed = dict(profile.get("computed") or {})
        self.segments = frozenset(profile.get("segments") or ())
        self.session = profile.get("session")
        self.consent = dict(profile.get("consent") or {})
        self.unavailable: dict[str, str] = dict(profile.get("unavailable") or {})
        self.contact: dict[str, Any] = dict(profile.get("contact") or {})
        self.customer_id = str(profile.get("customer_id") or "simulated-customer")
        self.outcomes = dict(outcomes)
        self.fallback_timezone = fallback_timezone
        self.links = dict(links)
        self.history = ListEventHistory()
        self.result = SimulationResult()
        self.recorded: dict[str, dict[str, Any]] = {}
        self.timers: list[tuple[datetime, int, str, str, str, int]] = []  # (due, seq, enrollment, kind, step, visit)
        self.outcome_events: list[tuple[datetime, int, EventView]] = []
        self._seq = itertools.count()

    # --- World ---
    def now(self) -> datetime:
        return self.clock

    def context(self, enrollment: EnrollmentState, *, event: EventView | None, needs: frozenset[str]) -> EvalContext:
        return EvalContext(
            now=self.clock,
            event=event.as_context() if event is not None else None,
            traits=self.traits,
            computed=self.computed,
            segments=self.segments,
            session=self.session,
            consent=self.consent,
            timezone=self.traits.get("timezone") if isinstance(self.traits.get("timezone"), str) else None,
            fallback_timezone=self.fallback_timezone,
            customer_id=self.customer_id,
            history=self.history,
        )

    def template_context(self, enrollment: EnrollmentState, *, lazy: frozenset[str]) -> dict[str, Any]:
        return {
            "profile": dict(self.traits),
            "event": enrollment.state.get("trigger") or {},
            "session": dict(self.session or {}),
            "journey": {"key": enrollment.journey, "step": enrollment.step},
            "links": dict(self.links),
        }

    def timezone(self, enrollment: EnrollmentState) -> str:
        zone = self.traits.get("timezone")
        return zone if isinstance(zone, str) and zone else self.fallback_timezone

    def step_begin(self, enrollment: EnrollmentState, *, key: str, step: str, kind: str) -> bool:
        if key in self.recorded:
            return False
        row = {
            "key": key,
            "enrollment": enrollment.id,
            "step": step,
            "kind": kind,
            "visit": enrollment.visit,
            "at": self.clock.isoformat(),
            "outcome": "",
            "detail": {},
        }
        self.recorded[key] = row
        self.result.path.append(row)
        return True

    def step_end(
        self, enrollment: EnrollmentState, *, key: str, kind: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        self.recorded[key].update(outcome=outcome, detail=detail)

    def channels_available(
        self, enrollment: EnrollmentState, *, channels: list[str], purpose: str
    ) -> dict[str, str | None]:
        return {channel: self.unavailable.get(channel) for channel in channels}

    def contact_check(self, enrollment: EnrollmentState, *, channel: str, purpose: str, priority: str) -> Verdict:
        """`contact[channel or "*"]`: one refusal {"reason", "until"} or a list of them, each in
        force until its `until`; none left in force means allowed."""
        rule = self.contact.get(channel) or self.contact.get("*")
        for refusal in rule if isinstance(rule, list) else [rule] if rule else []:
            until = refusal.get("until")
            retry_at = _parse_time(until) if isinstance(until, str) else None
            if retry_at is None or retry_at > self.clock:
                return Verdict(allowed=False, reason=str(refusal.get("reason", "capped")), retry_at=retry_at)
        return Verdict(allowed=True, reason="ok")

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
        delivery_id = str(uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key))
        outcome = self.outcomes.get(channel, self.outcomes.get("*", "delivered"))
        self.result.messages.append(
            {
                "at": self.clock.isoformat(),
                "channel": channel,
                "content": content,
                "purpose": purpose,
                "priority": priority,
                "delivery_id": delivery_id,
                "idempotency_key": idempotency_key,
                "step": enrollment.step,
                "outcome": outcome,
            }
        )
        names = {
            "sent": [OUTCOME_SENT],
            "delivered": [OUTCOME_SENT, OUTCOME_DELIVERED],
            "failed": [OUTCOME_FAILED],
        }.get(outcome, [])
        for offset, name in enumerate(names, start=1):
            properties: dict[str, Any] = {"delivery_id": delivery_id, "channel": channel}
            if name == OUTCOME_FAILED:
                properties["reason"] = "simulated failure"
            at = self.clock + OUTCOME_DELAY * offset
            event = EventView(
                id=None,
                name=name,
                type="track",
                channel="server",
                properties=properties,
                timestamp=at,
                customer_id=self.customer_id,
            )
            heapq.heappush(self.outcome_events, (at, next(self._seq), event))
        return delivery_id

    def set_traits(self, enrollment: EnrollmentState, *, traits: dict[str, Any], key: str) -> None:
        self.traits.update(traits)
        self.result.traits_set.append({"at": self.clock.isoformat(), "traits": traits})

    def emit_event(self, enrollment: EnrollmentState, *, name: str, properties: dict[str, Any], key: str) -> None:
        self.result.events_emitted.append({"at": self.clock.isoformat(), "event": name, "properties": properties})

    def call_webhook(self, enrollment: EnrollmentState, *, url: str, body: dict[str, Any], key: str) -> WebhookResult:
        self.result.webhooks.append({"at": self.clock.isoformat(), "url": url, "body": body})
        return WebhookResult(ok=True, status=None, error="simulated: not called")

    def set_timer(self, enrollment: EnrollmentState, *, kind: str, due_at: datetime) -> None:
        heapq.heappush(self.timers, (due_at, next(self._seq), enrollment.id, kind, enrollment.step, enrollment.visit))
        self.result.timers.append(
            {
                "kind": kind,
                "step": enrollment.step,
                "visit": enrollment.visit,
                "set_at": self.clock.isoformat(),
                "due_at": due_at.isoformat(),
                "fired": False,
            }
        )

    def clear_timers(self, enrollment: EnrollmentState) -> None:
        self.timers = [t for t in self.timers if t[2] != enrollment.id]
        heapq.heapify(self.timers)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SimulationError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


PROFILE_OBJECTS = ("traits", "computed", "consent", "session", "unavailable", "contact")


def _check_profile(profile: Mapping[str, Any]) -> None:
    for name in PROFILE_OBJECTS:
        if not isinstance(profile.get(name) or {}, Mapping):
            raise SimulationError(f"/profile/{name}", f"{name} must be an object")
    segments = profile.get("segments") or []
    if not isinstance(segments, list) or not all(isinstance(key, str) for key in segments):
        raise SimulationError("/profile/segments", "segments must be a list of segment keys")
    contact = profile.get("contact") or {}
    for channel, rule in contact.items():
        rules = rule if isinstance(rule, list) else [rule]
        if not all(isinstance(item, Mapping) for item in rules):
            raise SimulationError(f"/profile/contact/{channel}", "a refusal is an object {reason, until}")


def _inputs(events: Sequence[Mapping[str, Any]], customer_id: str) -> list[tuple[datetime, int, EventView]]:
    """The given events as the engine sees them, in time order (ties in the order given)."""
    inputs: list[tuple[datetime, int, EventView]] = []
    for index, raw in enumerate(events):
        at = _parse_time(raw.get("at") or raw.get("timestamp"))
        name = raw.get("event") or raw.get("name")
        if at is None:
            raise SimulationError(f"/events/{index}/at", "an ISO 8601 time is required")
        if not isinstance(name, str) or not name:
            raise SimulationError(f"/events/{index}/event", "an event name is required")
        if not isinstance(raw.get("properties") or {}, Mapping):
            raise SimulationError(f"/events/{index}/properties", "properties must be an object")
        view = EventView(
            id=index, name=name, type=str(raw.get("type", "track")), channel=str(raw.get("channel", "server")),
            properties=dict(raw.get("properties") or {}), timestamp=at, customer_id=customer_id,
        )  # fmt: skip
        inputs.append((at, index, view))
    inputs.sort(key=lambda item: (item[0], item[1]))
    return inputs


def _mark_fired(world: "SimulatedWorld", *, due: datetime, kind: str, step: str, visit: int) -> None:
    for timer in world.result.timers:
        if (
            timer["kind"] == kind
            and timer["step"] == step
            and timer["visit"] == visit
            and timer["due_at"] == due.isoformat()
        ):
            timer["fired"] = True
            timer["fired_at"] = world.clock.isoformat()


def simulate(
    definition: Mapping[str, Any],
    profile: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    start_at: datetime,
    until: datetime,
    *,
    outcomes: Mapping[str, str] | None = None,
    fallback_timezone: str = "UTC",
    links: Mapping[str, Any] | None = None,
    journey_key: str = "simulated",
) -> SimulationResult:
    """Run `definition` for one customer from `start_at` to `until` on a virtual clock.

    `events`: [{"event": name, "at": ISO time, "properties": {...}, "channel": "web", "type": "track"}]
    in any order. A journey triggered by the API or decide is entered at `start_at`.
    """
    _check_profile(profile)
    journey = compile_journey(key=journey_key, version_id="simulation", definition=definition)
    world = SimulatedWorld(
        profile=profile, outcomes=outcomes or {}, fallback_timezone=fallback_timezone, links=links or {}
    )
    world.clock = start_at
    world.customer_id = str(profile.get("customer_id") or world.customer_id)
    inputs = _inputs(events, world.customer_id)
    enrollments: list[EnrollmentState] = []
    counter = itertools.count(1)

    def enter(event: EventView | None) -> None:
        previous = [(e.entered_at, e.status) for e in enrollments]
        allowed, why = machine.reentry_allows(journey, previous=previous, now=world.clock)
        if not allowed:
            world.result.skipped_entries.append(
                {"at": world.clock.isoformat(), "why": why, "event": event.name if event else None}
            )
            return
        enrollment = EnrollmentState(
            id=f"sim-{next(counter)}", journey=journey.key, version="simulation",
            customer_id=world.customer_id, entered_at=world.clock,
        )  # fmt: skip
        enrollments.append(enrollment)
        machine.start(journey, enrollment, world, event=event)

    if journey.trigger["type"] in ("api", "decide"):
        enter(None)
    position = 0
    for _ in range(MAX_SIGNALS):
        next_input = inputs[position][0] if position < len(inputs) else None
        next_outcome = world.outcome_events[0][0] if world.outcome_events else None
        next_timer = world.timers[0][0] if world.timers else None
        candidates = [t for t in (next_input, next_outcome, next_timer) if t is not None and t <= until]
        if not candidates:
            break
        moment = min(candidates)
        world.clock = max(world.clock, moment)
        if next_timer == moment:
            due, _, enrollment_id, kind, step, visit = heapq.heappop(world.timers)
            _mark_fired(world, due=due, kind=kind, step=step, visit=visit)
            enrollment = next(e for e in enrollments if e.id == enrollment_id)
            machine.on_timer(journey, enrollment, world, kind=kind, step=step, visit=visit)
            continue
        if next_outcome == moment:
            _, _, event = heapq.heappop(world.outcome_events)
        else:
            _, _, event = inputs[position]
            position += 1
        world.history.append({**event.as_context(), "timestamp": event.timestamp})
        active = [e for e in enrollments if e.status == ACTIVE]
        for enrollment in active:
            machine.on_event(journey, enrollment, world, event)
        if machine.trigger_matches(journey, event):
            condition = journey.trigger_condition
            if condition is not None:
                probe = EnrollmentState(
                    id="probe", journey=journey.key, version="", customer_id=world.customer_id, entered_at=world.clock
                )
                if not condition.evaluate(world.context(probe, event=event, needs=condition.needs)):
                    world.result.skipped_entries.append(
                        {"at": world.clock.isoformat(), "why": "trigger condition false", "event": event.name}
                    )
                    continue
            enter(event)
    world.result.enrollments = [
        {"id": e.id, "status": e.status, "step": e.step, "end_reason": e.end_reason, "converted": e.converted,
         "entered_at": e.entered_at.isoformat(), "ended_at": e.ended_at.isoformat() if e.ended_at else None,
         "waiting_for": e.waiting_for, "routes": e.state.get("routes", []), "cohorts": e.state.get("cohorts", {})}
        for e in enrollments
    ]  # fmt: skip
    return world.result
