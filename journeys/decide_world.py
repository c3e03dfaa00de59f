"""Walking a decide journey: the engine's own step machine, run for one request, acting on nothing.

Decide answers by running the journey with the step handlers that run enrollments and simulations
(journeys.engine.machine), so a branch or a random split means the same thing in all three: the
same first-match rule, and the same cohort bucket, drawn from the customer and the journey as an
enrollment's is from its id. The World given to the machine here reads the request's context
(loaded before the walk, journeys.decide_lookup), turns each step the machine runs into an entry
of the decision's explanation, and stops the machine at the first route (the answer) or at a step
a request does not run: messages, waits, webhooks, traits and events belong to enrollments, so
the journey answers its default_decision instead.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from journeys.conditions import EvalContext
from journeys.decide_journeys import DecideJourney
from journeys.engine import machine
from journeys.engine.model import FAILED, EnrollmentState, StepFailed, Verdict, WebhookResult

# The steps a request runs; at any other the walk stops with the outcome "unsupported_step".
DECIDED_KINDS = frozenset({"branch", "random_split", "route", "exit"})


@dataclass(frozen=True, slots=True)
class Walk:
    route: str | None
    content: Mapping[str, Any]
    outcome: str  # "route", "exit", "holdout", "unsupported_step", "failed" (the engine's step limit)
    path: list[dict[str, Any]]


def walk(journey: DecideJourney, ctx: EvalContext, *, subject: str) -> Walk:
    """Run the journey from its start for the customer `subject` (their id, else the identity the
    request named) until it routes, ends or meets a step decide does not run, explaining every
    step. The enrollment is the customer's pass through this journey, so its random splits bucket
    the customer stably, and separately per journey and per step."""
    world = DecideWorld(ctx)
    enrollment = EnrollmentState(
        id=f"{journey.journey_key}:{subject}",
        journey=journey.journey_key,
        version=journey.engine.version_id,
        customer_id=subject,
        entered_at=ctx.now,
    )
    machine.start(journey.engine, enrollment, world, event=None)
    outcome = world.outcome or ("failed" if enrollment.status == FAILED else "exit")
    return Walk(world.route, world.content, outcome, world.path)


class DecideWorld:
    """The machine's World for one decide request: reads the loaded context, records the path,
    does nothing. Every action a step could take raises StepFailed; the steps that take them are
    refused at step_begin, before their handler runs."""

    __slots__ = ("content", "ctx", "outcome", "path", "route")

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx
        self.path: list[dict[str, Any]] = []
        self.outcome: str | None = None
        self.route: str | None = None
        self.content: Mapping[str, Any] = {}

    def now(self) -> datetime:
        return self.ctx.now

    def context(self, enrollment: EnrollmentState, *, event: Any, needs: frozenset[str]) -> EvalContext:
        # Loaded once for every journey of the placement, with the union of what they need.
        return self.ctx

    def template_context(self, enrollment: EnrollmentState, *, lazy: frozenset[str]) -> dict[str, Any]:
        return {
            "profile": dict(self.ctx.traits),
            "event": dict(self.ctx.event or {}),
            "session": dict(self.ctx.session or {}),
            "journey": {"key": enrollment.journey, "step": enrollment.step},
            "links": {},
        }

    def timezone(self, enrollment: EnrollmentState) -> str:
        return self.ctx.timezone or self.ctx.fallback_timezone

    def step_begin(self, enrollment: EnrollmentState, *, key: str, step: str, kind: str) -> bool:
        if self.outcome is not None:
            return False  # answered: the steps after a route are the enrollment's, not the request's
        if kind not in DECIDED_KINDS:
            self.path.append({"step": step, "kind": kind, "note": "not evaluated by decide"})
            self.outcome = "unsupported_step"
            return False
        return True

    def step_end(
        self, enrollment: EnrollmentState, *, key: str, kind: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        """The step as the decision's explanation has always shown it (GET /api/v1/decisions/{id})."""
        step = enrollment.step
        if kind == "branch":
            seen = detail["branches"]
            chosen = seen[-1]["branch"] if seen and seen[-1]["matched"] else "default"
            conditions = [entry["explain"] for entry in seen]
            self.path.append(
                {"step": step, "kind": kind, "branch": chosen, "next": detail["chosen"], "conditions": conditions}
            )
        elif kind == "random_split" and outcome == "holdout":
            self.path.append({"step": step, "kind": kind, "bucket": detail["bucket"], "holdout": True})
            self.outcome = "holdout"
        elif kind == "random_split":
            entry = {"step": step, "kind": kind, "bucket": detail["bucket"], "path": detail["path"]}
            self.path.append({**entry, "next": detail["chosen"]})
        elif kind == "route":
            self.path.append({"step": step, "kind": kind, "route": detail["destination"]})
            self.outcome, self.route, self.content = "route", detail["destination"], detail["content"]
        elif kind == "exit":
            self.path.append({"step": step, "kind": kind})
            self.outcome = "exit"
        else:
            self.path.append({"step": step, "kind": kind, "outcome": outcome, "detail": detail})

    def channels_available(
        self, enrollment: EnrollmentState, *, channels: list[str], purpose: str
    ) -> dict[str, str | None]:
        raise StepFailed("decide does not send messages")

    def contact_check(self, enrollment: EnrollmentState, *, channel: str, purpose: str, priority: str) -> Verdict:
        raise StepFailed("decide does not send messages")

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
        raise StepFailed("decide does not send messages")

    def set_traits(self, enrollment: EnrollmentState, *, traits: dict[str, Any], key: str) -> None:
        raise StepFailed("decide does not set traits")

    def emit_event(self, enrollment: EnrollmentState, *, name: str, properties: dict[str, Any], key: str) -> None:
        raise StepFailed("decide does not emit events")

    def call_webhook(self, enrollment: EnrollmentState, *, url: str, body: dict[str, Any], key: str) -> WebhookResult:
        raise StepFailed("decide does not call webhooks")

    def set_timer(self, enrollment: EnrollmentState, *, kind: str, due_at: datetime) -> None:
        raise StepFailed("decide does not wait")

    def clear_timers(self, enrollment: EnrollmentState) -> None:
        """Nothing to clear: decide never sets a timer."""
