"""The step machine: moves one enrollment through its journey's steps against a World.

Shared by real execution and simulation. It runs steps until the enrollment waits (a timer,
an awaited event, a message outcome) or ends, recording a history entry for every step
execution with what its conditions saw and why it went where it went.

Idempotency: each execution has a key `<enrollment>:<step>:<visit>` (plus the phase for a
waiting step's later phases: `:timeout`, `:outcome:<delivery>:<status>`, ...). The world
records the key before acting; a key already recorded means the work was done, and the
machine stops there. A signal (timer, event) for a step the enrollment is no longer at, or a
visit it is no longer on, is stale and ignored.
"""

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from journeys.engine.model import (
    ACTIVE,
    COMPLETED,
    EXITED,
    FAILED,
    OUTCOME_DELIVERED,
    OUTCOME_EVENTS,
    OUTCOME_FAILED,
    OUTCOME_SENT,
    SEGMENT_ENTERED,
    CompiledJourney,
    EnrollmentState,
    EventView,
    StepFailed,
    World,
    duration,
)

MAX_STEPS_PER_ADVANCE = 100
TIMER_WAIT = "wait"
TIMER_EVENT_TIMEOUT = "event_timeout"
TIMER_HOLD = "hold"


def outcome_timer(channel: str) -> str:
    return f"outcome:{channel}"


# --- entry -------------------------------------------------------------------------------------


def trigger_matches(journey: CompiledJourney, event: EventView, world_context: Any = None) -> bool:
    """Whether `event` starts this journey (name and segment only; the condition is checked
    by `trigger_allows` with a context)."""
    trigger = journey.trigger
    if trigger["type"] == "event":
        return bool(event.name == trigger["event"])
    if trigger["type"] == "segment_entered":
        return event.name == SEGMENT_ENTERED and event.properties.get("segment") == trigger["segment"]
    return False


def reentry_allows(
    journey: CompiledJourney, *, previous: list[tuple[datetime, str]], now: datetime
) -> tuple[bool, str]:
    """Whether a customer whose earlier enrollments were `previous` ((entered_at, status)) may
    enter again now, and why not."""
    if any(status == ACTIVE for _, status in previous):
        return False, "already in the journey"
    if not previous:
        return True, ""
    policy = journey.reentry
    if policy == "once":
        return False, "entered before; re-entry is once"
    if policy == "cooldown":
        last = max(at for at, _ in previous)
        if now < last + journey.cooldown:
            return False, f"cooldown until {(last + journey.cooldown).isoformat()}"
    return True, ""


def start(journey: CompiledJourney, enrollment: EnrollmentState, world: World, *, event: EventView | None) -> None:
    """Put a new enrollment on the start step and run it until it waits or ends."""
    if event is not None:
        enrollment.state["trigger"] = {
            "id": event.id,
            **event.as_context(),
        }
    _enter(journey, enrollment, journey.definition["start"])
    _advance(journey, enrollment, world)


# --- signals while waiting -----------------------------------------------------------------------


def on_event(journey: CompiledJourney, enrollment: EnrollmentState, world: World, event: EventView) -> bool:
    """An event of this enrollment's customer: exit criteria first, then what the current step
    waits on. Returns whether the enrollment changed."""
    if enrollment.status != ACTIVE:
        return False
    if _check_exits(journey, enrollment, world, event):
        return True
    waiting = enrollment.waiting_for or {}
    if waiting.get("kind") == "event" and event.name == waiting.get("event"):
        return _awaited_event(journey, enrollment, world, event)
    if (
        waiting.get("kind") == "outcome"
        and event.name in OUTCOME_EVENTS
        and str(event.properties.get("delivery_id", "")) == waiting.get("delivery_id")
    ):
        return _message_outcome(journey, enrollment, world, event)
    return False


def _awaited_event(journey: CompiledJourney, enrollment: EnrollmentState, world: World, event: EventView) -> bool:
    step = journey.steps[enrollment.step]
    condition = journey.conditions.get((enrollment.step, -1))
    detail: dict[str, Any] = {"event": event.name, "event_id": event.id}
    if condition is not None:
        ctx = world.context(enrollment, event=event, needs=condition.needs | {"event"})
        detail["condition"] = condition.explain(ctx)
        if not condition.evaluate(ctx):
            return False
    key = _key(enrollment, "event")
    if not world.step_begin(enrollment, key=key, step=enrollment.step, kind="wait_for_event"):
        return False
    world.step_end(enrollment, key=key, kind="wait_for_event", outcome="event", detail=detail)
    _leave_wait(enrollment, world)
    _enter(journey, enrollment, step["next"])
    _advance(journey, enrollment, world)
    return True


def on_timer(
    journey: CompiledJourney, enrollment: EnrollmentState, world: World, *, kind: str, step: str, visit: int
) -> bool:
    """A durable timer fell due. Stale timers (another step or visit, or one the step no
    longer waits on) do nothing."""
    waiting = enrollment.waiting_for or {}
    if (
        enrollment.status != ACTIVE
        or enrollment.step != step
        or enrollment.visit != visit
        or waiting.get("timer") != kind
        or not (kind in (TIMER_WAIT, TIMER_EVENT_TIMEOUT, TIMER_HOLD) or kind.startswith("outcome:"))
    ):
        return False
    if _check_stops_matching(journey, enrollment, world, None):
        return True
    definition = journey.steps[step]
    # A hold may be set again on the same visit: the due time makes each firing's key its own.
    key = _key(enrollment, f"{kind}:{waiting.get('until', '')}")
    if not world.step_begin(enrollment, key=key, step=step, kind=definition["type"]):
        return False
    if kind == TIMER_WAIT:
        world.step_end(enrollment, key=key, kind="wait", outcome="waited", detail={"due": waiting.get("until")})
        _leave_wait(enrollment, world)
        _enter(journey, enrollment, definition["next"])
    elif kind == TIMER_EVENT_TIMEOUT:
        world.step_end(
            enrollment, key=key, kind="wait_for_event", outcome="timeout",
            detail={"event": definition["event"], "why": f"no {definition['event']!r} before the timeout"},
        )  # fmt: skip
        _leave_wait(enrollment, world)
        _enter(journey, enrollment, definition["on_timeout"])
    elif kind == TIMER_HOLD:
        world.step_end(enrollment, key=key, kind="message", outcome="released", detail={"why": "hold ended"})
        _leave_wait(enrollment, world)
        _message_try(journey, enrollment, world, from_index=int(waiting.get("channel_index", 0)))
    else:
        channel = waiting.get("channel", "")
        _attempt(enrollment, channel, "timeout", reason=f"no outcome within {definition.get('outcome_timeout')}")
        world.step_end(
            enrollment, key=key, kind="message", outcome="timeout",
            detail={"channel": channel, "delivery_id": waiting.get("delivery_id"), "why": "outcome timeout"},
        )  # fmt: skip
        _leave_wait(enrollment, world)
        _message_try(journey, enrollment, world, from_index=int(waiting.get("channel_index", 0)) + 1)
    _advance(journey, enrollment, world)
    return True


# --- exits -------------------------------------------------------------------------------------


def _check_exits(journey: CompiledJourney, enrollment: EnrollmentState, world: World, event: EventView) -> bool:
    for index, rule in enumerate(journey.exits):
        if rule.event is None or rule.event != event.name:
            continue
        detail: dict[str, Any] = {"rule": index, "event": event.name, "event_id": event.id}
        if rule.condition is not None:
            ctx = world.context(enrollment, event=event, needs=rule.condition.needs | {"event"})
            detail["condition"] = rule.condition.explain(ctx)
            if not rule.condition.evaluate(ctx):
                continue
        _exit(enrollment, world, reason=f"exit: {event.name}", converted=rule.converted, detail=detail)
        return True
    return _check_stops_matching(journey, enrollment, world, event)


def _check_stops_matching(
    journey: CompiledJourney, enrollment: EnrollmentState, world: World, event: EventView | None
) -> bool:
    for index, rule in enumerate(journey.exits):
        if rule.stops_matching is None:
            continue
        ctx = world.context(enrollment, event=event, needs=rule.stops_matching.needs)
        if not rule.stops_matching.evaluate(ctx):
            detail = {"rule": index, "condition": rule.stops_matching.explain(ctx)}
            _exit(enrollment, world, reason="stopped matching", converted=False, detail=detail)
            return True
    return False


def _exit(enrollment: EnrollmentState, world: World, *, reason: str, converted: bool, detail: dict[str, Any]) -> None:
    key = _key(enrollment, "exit")
    if world.step_begin(enrollment, key=key, step=enrollment.step, kind="exit_criteria"):
        world.step_end(enrollment, key=key, kind="exit_criteria", outcome="exited", detail={**detail, "why": reason})
    _leave_wait(enrollment, world)
    _end(enrollment, world, EXITED, reason)
    enrollment.converted = converted


def end_enrollment(enrollment: EnrollmentState, world: World, status: str, reason: str) -> None:
    _leave_wait(enrollment, world)
    _end(enrollment, world, status, reason)


def _end(enrollment: EnrollmentState, world: World, status: str, reason: str) -> None:
    enrollment.status = status
    enrollment.end_reason = reason
    enrollment.ended_at = world.now()
    enrollment.waiting_for = None


# --- running steps -----------------------------------------------------------------------------


def _key(enrollment: EnrollmentState, phase: str = "") -> str:
    base = f"{enrollment.id}:{enrollment.step}:{enrollment.visit}"
    return f"{base}:{phase}" if phase else base


def _enter(journey: CompiledJourney, enrollment: EnrollmentState, step: str) -> None:
    visits: dict[str, int] = enrollment.state.setdefault("visits", {})
    visits[step] = visits.get(step, 0) + 1
    enrollment.step = step
    enrollment.visit = visits[step]


def _leave_wait(enrollment: EnrollmentState, world: World) -> None:
    if enrollment.waiting_for and enrollment.waiting_for.get("timer"):
        world.clear_timers(enrollment)
    enrollment.waiting_for = None


def _wait(
    enrollment: EnrollmentState, world: World, waiting: dict[str, Any], *, timer: str | None, due: datetime | None
) -> None:
    if timer is not None and due is not None:
        waiting = {**waiting, "timer": timer, "until": due.isoformat()}
        world.set_timer(enrollment, kind=timer, due_at=due)
    enrollment.waiting_for = waiting


def _advance(journey: CompiledJourney, enrollment: EnrollmentState, world: World) -> None:
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if enrollment.status != ACTIVE or enrollment.waiting_for is not None:
            return
        step = journey.steps[enrollment.step]
        key = _key(enrollment)
        if not world.step_begin(enrollment, key=key, step=enrollment.step, kind=step["type"]):
            return  # already run by an earlier delivery of this work
        handler = _HANDLERS[step["type"]]
        try:
            handler(journey, enrollment, world, step, key)
        except StepFailed as failure:
            _fail(enrollment, world, key, step["type"], failure.reason)
    end_enrollment(enrollment, world, FAILED, f"more than {MAX_STEPS_PER_ADVANCE} steps without waiting")


def _fail(enrollment: EnrollmentState, world: World, key: str, kind: str, reason: str) -> None:
    world.step_end(enrollment, key=key, kind=kind, outcome="failed", detail={"why": reason})
    end_enrollment(enrollment, world, FAILED, reason)


def migrate(
    journey: CompiledJourney, enrollment: EnrollmentState, world: World, *, to_step: str, from_version: str
) -> None:
    """Move a waiting enrollment onto `journey` (a newer version) at `to_step`, which it enters
    afresh: its old timers go, the new step sets its own."""
    key = _key(enrollment, f"migrate:{journey.version_id}")
    if not world.step_begin(enrollment, key=key, step=enrollment.step, kind="migration"):
        return
    detail = {
        "from_version": from_version,
        "to_version": journey.version_id,
        "from_step": enrollment.step,
        "to_step": to_step,
    }
    world.step_end(enrollment, key=key, kind="migration", outcome="migrated", detail=detail)
    _leave_wait(enrollment, world)
    enrollment.version = journey.version_id
    enrollment.state.pop("message", None)
    _enter(journey, enrollment, to_step)
    _advance(journey, enrollment, world)


def _go(journey: CompiledJourney, enrollment: EnrollmentState, target: str | None, world: World, reason: str) -> None:
    if target is None:
        _end(enrollment, world, COMPLETED, reason)
    else:
        _enter(journey, enrollment, target)


def _branch(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    seen: list[dict[str, Any]] = []
    chosen = step["default"]
    why = "no branch matched: default"
    for index, branch in enumerate(step["branches"]):
        condition = journey.conditions[(e.step, index)]
        # The explanation evaluates the whole condition and carries its result; evaluating it
        # again beside it would only do the same work twice.
        explained = condition.explain(world.context(e, event=None, needs=condition.needs))
        matched = bool(explained["result"])
        seen.append({"branch": index, "name": branch.get("name", ""), "matched": matched, "explain": explained})
        if matched:
            chosen = branch["next"]
            why = f"branch {index} {branch.get('name', '')!r} matched (first match wins)".replace(" ''", "")
            break
    world.step_end(e, key=key, kind="branch", outcome="branch", detail={"chosen": chosen, "why": why, "branches": seen})
    _enter(journey, e, chosen)


def cohort_bucket(enrollment_id: str, step: str) -> float:
    """A number in [0, 100) fixed by the enrollment id and step: the same customer pass always
    lands in the same cohort, whoever runs it. It carries the 53 bits of the hash a float holds,
    so a split's shares are kept to any precision a definition gives them (a percent may be any
    number), not rounded to the hundredth of a percent (0.001 would have taken 0.01)."""
    digest = hashlib.sha256(f"{enrollment_id}:{step}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) * 100 / 2**53


def _random_split(
    journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str
) -> None:
    bucket = cohort_bucket(e.id, e.step)
    holdout = float(step.get("holdout", 0))
    cohorts: dict[str, Any] = e.state.setdefault("cohorts", {})
    if bucket < holdout:
        cohorts[e.step] = "holdout"
        world.step_end(
            e, key=key, kind="random_split", outcome="holdout", detail={"bucket": bucket, "holdout": holdout}
        )
        _end(e, world, EXITED, "holdout")
        return
    edge = holdout
    chosen = step["paths"][-1]["next"]
    chosen_index = len(step["paths"]) - 1
    for index, path in enumerate(step["paths"]):
        edge += float(path["percent"])
        if bucket < edge:
            chosen, chosen_index = path["next"], index
            break
    cohorts[e.step] = chosen_index
    world.step_end(
        e, key=key, kind="random_split", outcome="branch",
        detail={"bucket": bucket, "holdout": holdout, "path": chosen_index, "chosen": chosen},
    )  # fmt: skip
    _enter(journey, e, chosen)


def _set_traits(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    traits = dict(step["traits"])
    world.set_traits(e, traits=traits, key=key)
    world.step_end(e, key=key, kind="set_traits", outcome="next", detail={"traits": traits})
    _enter(journey, e, step["next"])


def _emit_event(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    properties = {**dict(step.get("properties") or {}), "journey": journey.key, "enrollment_id": e.id}
    world.emit_event(e, name=step["event"], properties=properties, key=key)
    world.step_end(
        e, key=key, kind="emit_event", outcome="next", detail={"event": step["event"], "properties": properties}
    )
    _enter(journey, e, step["next"])


def _webhook(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    body = {
        **dict(step.get("body") or {}),
        "journey": journey.key,
        "enrollment_id": e.id,
        "customer_id": e.customer_id,
        "step": e.step,
    }
    result = world.call_webhook(e, url=step["url"], body=body, key=key)
    detail = {"url": step["url"], "status": result.status, "error": result.error}
    if result.ok:
        world.step_end(e, key=key, kind="webhook", outcome="next", detail=detail)
        _enter(journey, e, step["next"])
    elif step.get("on_failed"):
        world.step_end(e, key=key, kind="webhook", outcome="failed", detail=detail)
        _enter(journey, e, step["on_failed"])
    else:
        world.step_end(e, key=key, kind="webhook", outcome="failed", detail=detail)
        _end(e, world, FAILED, f"webhook failed: {result.error or result.status}")


def _route(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    route = {"destination": step["destination"], "content": dict(step.get("content") or {}), "step": e.step}
    e.state.setdefault("routes", []).append({**route, "at": world.now().isoformat()})
    world.step_end(e, key=key, kind="route", outcome="routed", detail=route)
    _go(journey, e, step.get("next"), world, f"routed to {step['destination']}")


def _wait_step(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    now = world.now()
    if "duration" in step:
        due = now + duration(step["duration"])
        world.step_end(e, key=key, kind="wait", outcome="waiting", detail={"until": due.isoformat()})
        _wait(e, world, {"kind": "timer"}, timer=TIMER_WAIT, due=due)
        return
    window = step["until_local"]
    zone = world.timezone(e)
    opens = next_window_start(now, zone, window["start"], window["end"], window.get("weekdays"))
    detail = {"window": dict(window), "timezone": zone}
    if opens is None:
        world.step_end(e, key=key, kind="wait", outcome="next", detail={**detail, "why": "inside the window now"})
        _enter(journey, e, step["next"])
        return
    world.step_end(e, key=key, kind="wait", outcome="waiting", detail={**detail, "until": opens.isoformat()})
    _wait(e, world, {"kind": "timer"}, timer=TIMER_WAIT, due=opens)


def _wait_for_event(
    journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str
) -> None:
    due = world.now() + duration(step["timeout"])
    world.step_end(
        e, key=key, kind="wait_for_event", outcome="waiting", detail={"event": step["event"], "until": due.isoformat()}
    )
    _wait(e, world, {"kind": "event", "event": step["event"]}, timer=TIMER_EVENT_TIMEOUT, due=due)


def _exit_step(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    world.step_end(e, key=key, kind="exit", outcome="completed", detail={})
    _end(e, world, COMPLETED, "reached an exit step")


# --- message steps -----------------------------------------------------------------------------


def _message(journey: CompiledJourney, e: EnrollmentState, world: World, step: Mapping[str, Any], key: str) -> None:
    e.state["message"] = {"step": e.step, "visit": e.visit, "attempts": []}
    world.step_end(e, key=key, kind="message", outcome="started", detail={"channels": list(step["channels"])})
    _message_try(journey, e, world, from_index=0)


def _attempt(e: EnrollmentState, channel: str, result: str, **extra: Any) -> None:
    message = e.state.setdefault("message", {"attempts": []})
    message["attempts"].append({"channel": channel, "result": result, **extra})


def _message_try(journey: CompiledJourney, e: EnrollmentState, world: World, *, from_index: int) -> None:
    """Try the step's channels from `from_index` on: skip those the customer cannot receive,
    hold or skip when the contact policy says so, else deliver and wait for the outcome."""
    step = journey.steps[e.step]
    channels: list[str] = list(step["channels"])
    purpose = step.get("purpose", "marketing")
    priority = step.get("priority", "normal")
    message = e.state.setdefault("message", {"attempts": []})
    message["tries"] = message.get("tries", 0) + 1
    key = _key(e, f"try:{message['tries']}")
    if not world.step_begin(e, key=key, step=e.step, kind="message"):
        return
    remaining = channels[from_index:]
    available = world.channels_available(e, channels=remaining, purpose=purpose) if remaining else {}
    tried: list[dict[str, Any]] = []
    for index in range(from_index, len(channels)):
        channel = channels[index]
        why_not = available.get(channel)
        if why_not:
            tried.append({"channel": channel, "result": "unavailable", "reason": why_not})
            _attempt(e, channel, "unavailable", reason=why_not)
            continue
        verdict = world.contact_check(e, channel=channel, purpose=purpose, priority=priority)
        if not verdict.allowed:
            if step.get("on_capped", "hold") == "hold" and verdict.retry_at is not None:
                tried.append(
                    {
                        "channel": channel,
                        "result": "held",
                        "reason": verdict.reason,
                        "until": verdict.retry_at.isoformat(),
                    }
                )
                _attempt(e, channel, "held", reason=verdict.reason)
                world.step_end(
                    e,
                    key=key,
                    kind="message",
                    outcome="held",
                    detail={"channels": tried, "why": f"contact policy: {verdict.reason}"},
                )
                _wait(e, world, {"kind": "timer", "channel_index": index}, timer=TIMER_HOLD, due=verdict.retry_at)
                return
            tried.append({"channel": channel, "result": "skipped", "reason": verdict.reason})
            _attempt(e, channel, "skipped", reason=verdict.reason)
            world.step_end(
                e,
                key=key,
                kind="message",
                outcome="skipped",
                detail={"channels": tried, "why": f"contact policy: {verdict.reason}"},
            )
            _go(journey, e, step["next"], world, "message skipped")
            return
        content, missing = render_content(step, channel, world.template_context(e, lazy=_lazy_roots(step, channel)))
        try:
            delivery_id = world.deliver(
                e,
                channel=channel,
                content=content,
                idempotency_key=f"journey:{e.id}:{e.step}:{e.visit}:{channel}",
                purpose=purpose,
                priority=priority,
            )
        except StepFailed as failure:
            tried.append({"channel": channel, "result": "failed", "reason": failure.reason})
            _attempt(e, channel, "failed", reason=failure.reason)
            continue
        entry: dict[str, Any] = {"channel": channel, "result": "delivering", "delivery_id": delivery_id}
        if missing:
            entry["missing_variables"] = missing
            entry["content"] = "default"
        tried.append(entry)
        _attempt(e, channel, "delivering", delivery_id=delivery_id)
        world.step_end(e, key=key, kind="message", outcome="delivering", detail={"channels": tried})
        waiting = {
            "kind": "outcome",
            "delivery_id": delivery_id,
            "channel": channel,
            "channel_index": index,
            "await": step.get("await", "sent"),
        }
        if step.get("outcome_timeout"):
            _wait(e, world, waiting, timer=outcome_timer(channel), due=world.now() + duration(step["outcome_timeout"]))
        else:
            _wait(e, world, waiting, timer=None, due=None)
        return
    world.step_end(
        e, key=key, kind="message", outcome="failed", detail={"channels": tried, "why": "no channel left to try"}
    )
    _go(journey, e, step.get("on_failed") or step["next"], world, "message failed")


def _message_outcome(journey: CompiledJourney, e: EnrollmentState, world: World, event: EventView) -> bool:
    waiting = e.waiting_for or {}
    step = journey.steps[e.step]
    status = {OUTCOME_SENT: "sent", OUTCOME_DELIVERED: "delivered", OUTCOME_FAILED: "failed"}[event.name]
    if status == "sent" and waiting.get("await") == "delivered":
        return False
    key = _key(e, f"outcome:{waiting.get('delivery_id')}:{status}")
    if not world.step_begin(e, key=key, step=e.step, kind="message"):
        return False
    channel = waiting.get("channel", "")
    detail = {"channel": channel, "delivery_id": waiting.get("delivery_id"), "outcome": event.name}
    if "reason" in event.properties:
        detail["reason"] = event.properties["reason"]
    _leave_wait(e, world)
    if status == "failed":
        _attempt(e, channel, "failed", reason=str(event.properties.get("reason", "")))
        world.step_end(
            e, key=key, kind="message", outcome="failed", detail={**detail, "why": "falling back to the next channel"}
        )
        _message_try(journey, e, world, from_index=int(waiting.get("channel_index", 0)) + 1)
    else:
        _attempt(e, channel, status)
        world.step_end(e, key=key, kind="message", outcome=status, detail=detail)
        _go(journey, e, step["next"], world, "message sent")
    _advance(journey, e, world)
    return True


def _lazy_roots(step: Mapping[str, Any], channel: str) -> frozenset[str]:
    """Which of the costly template roots the channel's content mentions."""
    text = json.dumps([(step.get("content") or {}).get(channel), (step.get("default_content") or {}).get(channel)])
    return frozenset(root for root in ("session", "links") if root in text)


def render_content(step: Mapping[str, Any], channel: str, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The channel's content rendered with Liquid; the step's default content instead when a
    variable is missing or rendering failed (a filter refusing its input renders nothing, so the
    message would go out with a hole). Never a half-rendered message. Returns (content, what
    was wrong: missing variable names and "error: ..." lines)."""
    from journeys.templates import render

    def fill(value: Any, missing: list[str]) -> Any:
        if isinstance(value, str):
            rendered = render(value, context, None)
            missing.extend(rendered.missing)
            missing.extend(f"error: {error}" for error in rendered.errors)
            return rendered.text
        if isinstance(value, dict):
            return {k: fill(v, missing) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, missing) for v in value]
        return value

    missing: list[str] = []
    primary = step.get("content", {}).get(channel)
    content: dict[str, Any] = fill(primary, missing) if primary is not None else {}
    if primary is not None and not missing:
        return content, []
    default = (step.get("default_content") or {}).get(channel)
    if default is None:
        return content, sorted(set(missing))
    return fill(default, []), sorted(set(missing))


# --- local time windows ------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_window_start(
    now: datetime, zone_name: str, start: str, end: str, weekdays: list[int] | None
) -> datetime | None:
    """None when `now` is inside the local window [start, end) (on an allowed weekday of the
    window's start, Monday = 0), else the next moment the window opens, in UTC. A window
    whose end is before its start runs past midnight."""
    zone = _zone(zone_name)
    local = now.astimezone(zone)
    opens_at = time.fromisoformat(start)
    closes_at = time.fromisoformat(end)
    candidates: list[datetime] = []
    for offset in range(-1, 9):
        day = local.date() + timedelta(days=offset)
        if weekdays and day.weekday() not in weekdays:
            continue
        window_start = datetime.combine(day, opens_at, zone)
        window_end = datetime.combine(day + timedelta(days=1) if closes_at <= opens_at else day, closes_at, zone)
        if window_start <= local < window_end:
            return None
        if window_start > local:
            candidates.append(window_start)
    return min(candidates).astimezone(ZoneInfo("UTC")) if candidates else None


_HANDLERS = {
    "branch": _branch,
    "random_split": _random_split,
    "set_traits": _set_traits,
    "emit_event": _emit_event,
    "webhook": _webhook,
    "route": _route,
    "wait": _wait_step,
    "wait_for_event": _wait_for_event,
    "message": _message,
    "exit": _exit_step,
}
