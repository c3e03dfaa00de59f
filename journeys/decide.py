"""The decide path: one customer, one placement, an answer now.

`decision_make` answers a decide request synchronously from the published decide journeys of its
placement (trigger `{"type": "decide", "placement": ...}`, compiled once per process:
journeys.decide_journeys). It loads only the parts of the customer the journeys' conditions need
(journeys.decide_lookup), walks each journey with the engine's own step machine in a world that
acts on nothing (journeys.decide_world), renders the answer's content with Liquid (as message
content is), and hands a Decision row that says why to the process's recorder
(journeys.decide_recorder), which writes it behind the answer.

Speed: a request costs one Redis round trip (the source's rate limit, as ingestion counts it),
one identity lookup (prepared once per connection, the segment keys in the same statement), one
query per other root the conditions need, and a share of a bulk COPY of Decision rows.

Degraded answers: when Redis cannot be reached (the rate limit cannot be counted, the live
session state cannot be read), when the database cannot be read (the profile is unknown) or when
the session provider fails, the answer is the journey's `default_decision`, 200, marked
`degraded` with the reason. The broker is never on this path, so a broker outage alone does not
change answers: they stay whole.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from config.core import metrics
from journeys import contracts as journey_contracts
from journeys.conditions import EvalContext
from journeys.decide_journeys import DecideJourney, current_generation, placement_journeys, placement_journeys_cached
from journeys.decide_lookup import Identity, SessionUnavailable, load_context, request_event
from journeys.decide_recorder import made_at, new_decision_id, recorder
from journeys.decide_world import walk
from journeys.models import Decision

logger = logging.getLogger(__name__)

# --- The answer ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionResult:
    decision_id: UUID
    placement: str
    route: str | None
    content: Mapping[str, Any]
    journey: str | None
    version: int | None
    degraded: bool
    reason: str | None

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "decision_id": str(self.decision_id),
            "placement": self.placement,
            "route": self.route,
            "content": self.content,
            "journey": self.journey,
            "version": self.version,
            "degraded": self.degraded,
        }
        if self.degraded:
            body["reason"] = self.reason
        return body


class UnknownPlacement(Exception):
    pass


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # What orjson refuses and json takes (integers past 64 bits): as the JSONField would.
        import json

        return json.dumps(value)


def _default(
    journey: DecideJourney | None, reason: str, explanation: dict[str, Any]
) -> tuple[str | None, Mapping[str, Any]]:
    if journey is None:
        return None, {}
    default = journey.default_decision
    explanation["default_decision"] = {"journey": journey.journey_key, "reason": reason}
    return default.get("route"), default.get("content") or {}


def _render(
    journey: DecideJourney,
    content: Mapping[str, Any],
    *,
    ctx: EvalContext | None,
    event: Mapping[str, Any],
    customer_id: UUID | None,
    step: str | None,
    explanation: dict[str, Any],
) -> Mapping[str, Any]:
    """The answer's content rendered with Liquid as message content is (journeys.templates):
    over `profile` (traits), `event` (the request), `session`, `journey` and `links`; when a
    variable is missing or rendering fails, the journey's default_decision content rendered
    instead, never a half-rendered answer; the explanation says what was missing. A default
    answer (degraded too) renders the default content over what could be read."""
    from journeys.templates import render_content

    links: Mapping[str, Any] = {}
    if "links" in journey.template_roots and customer_id is not None:
        try:
            links = journey_contracts.links_for(customer_id)
        except Exception:  # a provider that fails leaves its link missing: the default content
            logger.warning("decide: links unavailable for %s", customer_id, exc_info=True)
    context = {
        "profile": dict(ctx.traits) if ctx is not None else {},
        "event": dict(event),
        "session": dict(ctx.session or {}) if ctx is not None else {},
        "journey": {"key": journey.journey_key, "step": step},
        "links": dict(links),
    }
    default = journey.default_decision.get("content") or {}
    rendered = render_content(content, context, None if step is None else default)
    if not rendered.ok:
        explanation["content"] = {
            "missing": rendered.missing,
            "errors": rendered.errors,
            "used_default": rendered.used_default,
        }
    return rendered.content


def _placement_journeys(placement: str, reason: str | None) -> tuple[list[DecideJourney], str | None]:
    """The placement's published decide journeys, and the reason to answer degraded: with the
    database unreachable, the journeys this process compiled last (database_unavailable)."""
    try:
        generation = None if reason == "database_unavailable" else current_generation()
        return placement_journeys(placement, generation), reason
    except DatabaseError:
        return placement_journeys_cached(placement), reason or "database_unavailable"


def decision_make(
    *,
    source_id: UUID | None,
    placement: str,
    identity: Identity,
    channel: str,
    context: Mapping[str, Any],
    degraded_reason: str | None = None,
) -> DecisionResult:
    """Answer a decide request and record the Decision. Raises UnknownPlacement when no decide
    journey is published for the placement. The caller counts the source's rate limit (and
    passes degraded_reason="redis_unavailable" when it could not)."""
    started = time.perf_counter()
    now = timezone.now()
    journeys, reason = _placement_journeys(placement, degraded_reason)
    if not journeys and reason != "database_unavailable":
        # The database said so: an unknown placement is the caller's mistake, whatever else is down.
        raise UnknownPlacement(placement)
    label = placement if journeys else "unknown"
    explanation: dict[str, Any] = {"journeys": []}
    customer_id: UUID | None = None
    route: str | None = None
    content: Mapping[str, Any] = {}
    answered_by: DecideJourney | None = None
    ctx: EvalContext | None = None
    route_step: str | None = None
    if reason is None:
        needs = frozenset().union(*(j.needs for j in journeys))
        explanation["loaded"] = sorted(needs)
        try:
            ctx, customer_id = load_context(identity=identity, needs=needs, channel=channel, context=context, now=now)
        except DatabaseError:
            reason = "database_unavailable"
        except SessionUnavailable:
            reason = "session_unavailable"
        else:
            explanation["customer_found"] = customer_id is not None
            for journey in journeys:
                result = walk(journey, ctx, subject=str(customer_id or identity.subject))
                explanation["journeys"].append(
                    {
                        "journey": journey.journey_key,
                        "version": journey.version_number,
                        "outcome": result.outcome,
                        "path": result.path,
                    }
                )
                if result.outcome == "route":
                    route, content, answered_by = result.route, result.content, journey
                    route_step = result.path[-1]["step"]
                    break
            if answered_by is None:
                answered_by = journeys[0]
                route, content = _default(answered_by, "no route reached", explanation)
    if reason is not None:
        answered_by = journeys[0] if journeys else None
        route, content = _default(answered_by, reason, explanation)
        explanation["degraded"] = reason
        metrics.DECIDE_DEGRADED.labels(placement=label, reason=reason).inc()
    if answered_by is not None and answered_by.templated:
        content = _render(
            answered_by,
            content,
            ctx=ctx,
            event=ctx.event or {} if ctx is not None else request_event(channel, context),
            customer_id=customer_id,
            step=route_step,
            explanation=explanation,
        )
    result_body = {"route": route, "content": dict(content)}
    decision_id = new_decision_id()
    recorder.submit(
        (
            decision_id,
            placement,
            customer_id,
            answered_by.version_id if answered_by else None,
            now,
            reason is not None,
            _dumps({**result_body, "journey": answered_by.journey_key if answered_by else None, "channel": channel}),
            _dumps(explanation),
        )
    )
    metrics.DECIDE_LATENCY.labels(placement=label).observe(time.perf_counter() - started)
    return DecisionResult(
        decision_id=decision_id,
        placement=placement,
        route=route,
        content=content,
        journey=answered_by.journey_key if answered_by else None,
        version=answered_by.version_number if answered_by else None,
        degraded=reason is not None,
        reason=reason,
    )


# How long past DECIDE_RECORD_LINGER_MS decision_get waits for a young decision to be written.
GET_WAIT_MARGIN_SECONDS = 1.0
_GET_POLL_SECONDS = 0.02


def decision_get(*, decision_id: UUID) -> Decision | None:
    """The decision, once written. One this process still holds is written first; one another
    process may still hold (its id is younger than the linger plus GET_WAIT_MARGIN_SECONDS) is
    waited for, so an id decide answered resolves; any other unknown id is None at once."""
    decisions = Decision.objects.select_related("version__journey")
    found = decisions.filter(id=decision_id).first()
    if found is not None:
        return found
    if recorder.holds(decision_id):
        recorder.flush()
        return decisions.filter(id=decision_id).first()
    made = made_at(decision_id)
    if made is None:
        return None
    deadline = made + settings.DECIDE_RECORD_LINGER_MS / 1000 + GET_WAIT_MARGIN_SECONDS
    while found is None and time.time() < deadline:
        time.sleep(_GET_POLL_SECONDS)
        found = decisions.filter(id=decision_id).first()
    return found
