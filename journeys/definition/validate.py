"""Validate a journey definition: its JSON Schema, then what a schema cannot say (every `next`
names a step, every step is reachable, split percents add up, conditions compile, templates
parse). Pure: no Django, so the admin, the API and the tests share it.

Every error carries a JSON pointer to the bad part (`/steps/remind_sms/next`), so the admin
can point at the step.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

SCHEMA_PATH = Path(__file__).with_name("schema.json")

# The fields of each step kind that name another step.
NEXT_FIELDS = ("next", "default", "on_timeout", "on_failed")
# Steps that finish at once (no timer, no event): a loop made only of these would never stop.
INSTANT_KINDS = frozenset({"branch", "random_split", "set_traits", "emit_event", "webhook", "route"})


@dataclass(frozen=True, slots=True)
class DefinitionError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def pointer(*parts: object) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def validate_definition(defn: object) -> list[DefinitionError]:
    """Every problem with `defn`, schema errors first; an empty list means it can be published."""
    errors = [_schema_error(error) for error in _validator().iter_errors(defn)]
    if errors:
        return sorted(errors, key=lambda e: e.path)
    assert isinstance(defn, dict)
    return list(_semantic_errors(defn))


def _schema_error(error: ValidationError) -> DefinitionError:
    # oneOf/anyOf/if-then report "not valid under any": the closest alternative says more.
    if error.context:
        deeper = best_match(error.context)
        if deeper is not None:
            error = deeper
    return DefinitionError(pointer(*error.absolute_path), error.message)


def step_targets(step: dict[str, Any]) -> Iterator[tuple[tuple[object, ...], str]]:
    """(path inside the step, target step id) for every reference a step makes."""
    for name in NEXT_FIELDS:
        if isinstance(step.get(name), str):
            yield (name,), step[name]
    for index, branch in enumerate(step.get("branches") or []):
        yield ("branches", index, "next"), branch["next"]
    for index, path in enumerate(step.get("paths") or []):
        yield ("paths", index, "next"), path["next"]


def _semantic_errors(defn: dict[str, Any]) -> Iterator[DefinitionError]:
    steps: dict[str, dict[str, Any]] = defn["steps"]
    if defn["start"] not in steps:
        yield DefinitionError("/start", f"no step named {defn['start']!r}")
    for step_id, step in steps.items():
        for where, target in step_targets(step):
            if target not in steps:
                yield DefinitionError(pointer("steps", step_id, *where), f"no step named {target!r}")
            elif target == step_id and step["type"] in INSTANT_KINDS:
                yield DefinitionError(pointer("steps", step_id, *where), "a step cannot lead to itself")
    yield from _reachability(defn, steps)
    yield from _instant_loops(steps)
    for step_id, step in steps.items():
        yield from _step_errors(step_id, step)
    yield from _condition_errors(defn)
    trigger = defn["trigger"]
    if trigger["type"] == "decide" and "default_decision" not in defn:
        yield DefinitionError("/default_decision", "a decide journey needs a default_decision")
    entry = defn.get("entry") or {}
    if entry.get("reentry") == "cooldown" and not any((entry.get("cooldown") or {}).values()):
        yield DefinitionError("/entry/cooldown", "the cooldown must be longer than zero")


def _reachability(defn: dict[str, Any], steps: dict[str, dict[str, Any]]) -> Iterator[DefinitionError]:
    seen: set[str] = set()
    todo = [defn["start"]] if defn["start"] in steps else []
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(target for _, target in step_targets(steps[current]) if target in steps)
    for step_id in steps:
        if step_id not in seen and defn["start"] in steps:
            yield DefinitionError(pointer("steps", step_id), f"step {step_id!r} cannot be reached from the start")


def _instant_loops(steps: dict[str, dict[str, Any]]) -> Iterator[DefinitionError]:
    """A cycle of steps that never wait would run forever within one advance."""
    graph = {
        step_id: [t for _, t in step_targets(step) if t in steps and steps[t]["type"] in INSTANT_KINDS]
        for step_id, step in steps.items()
        if step["type"] in INSTANT_KINDS
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[str] = set()

    def visit(node: str) -> Iterator[DefinitionError]:
        state[node] = 1
        for target in graph.get(node, []):
            if state.get(target) == 1 and target not in reported and target != node:
                reported.add(target)
                yield DefinitionError(
                    pointer("steps", target), f"steps loop back to {target!r} without a wait in between"
                )
            elif target not in state:
                yield from visit(target)
        state[node] = 2

    for node in graph:
        if node not in state:
            yield from visit(node)


def _step_errors(step_id: str, step: dict[str, Any]) -> Iterator[DefinitionError]:
    kind = step["type"]
    base = ("steps", step_id)
    if kind == "random_split":
        total = sum(path["percent"] for path in step["paths"]) + step.get("holdout", 0)
        if abs(total - 100) > 1e-9:
            yield DefinitionError(pointer(*base, "paths"), f"percents and holdout add up to {total:g}, not 100")
    elif kind == "message":
        content = step.get("content") or {}
        defaults = step.get("default_content") or {}
        for channel in step["channels"]:
            if channel not in content and channel not in defaults:
                yield DefinitionError(pointer(*base, "content"), f"no content for channel {channel!r}")
        for field in ("content", "default_content"):
            for channel, body in (step.get(field) or {}).items():
                if channel not in step["channels"]:
                    yield DefinitionError(
                        pointer(*base, field, channel), f"{channel!r} is not one of the step's channels"
                    )
                yield from _template_errors((*base, field, channel), body)
    elif kind == "wait" and "until_local" in step:
        window = step["until_local"]
        if window["start"] == window["end"]:
            yield DefinitionError(pointer(*base, "until_local"), "the window's start and end are the same time")
    elif kind == "wait" and not any(step["duration"].values()):
        yield DefinitionError(pointer(*base, "duration"), "the duration must be longer than zero")
    elif kind == "wait_for_event" and not any(step["timeout"].values()):
        yield DefinitionError(pointer(*base, "timeout"), "the timeout must be longer than zero")


def _template_errors(where: tuple[object, ...], value: object) -> Iterator[DefinitionError]:
    if isinstance(value, str):
        from journeys.templates import validate_template

        for message in validate_template(value):
            yield DefinitionError(pointer(*where), f"template: {message}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _template_errors((*where, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _template_errors((*where, index), item)


def condition_specs(defn: dict[str, Any]) -> Iterator[tuple[tuple[object, ...], Any]]:
    """(path, condition) for every condition in a (schema-valid) definition."""
    trigger = defn["trigger"]
    if "condition" in trigger:
        yield ("trigger", "condition"), trigger["condition"]
    for index, rule in enumerate(defn.get("exit") or []):
        for name in ("condition", "stops_matching"):
            if name in rule:
                yield ("exit", index, name), rule[name]
    for step_id, step in defn["steps"].items():
        if "condition" in step:
            yield ("steps", step_id, "condition"), step["condition"]
        for index, branch in enumerate(step.get("branches") or []):
            yield ("steps", step_id, "branches", index, "condition"), branch["condition"]


def _condition_errors(defn: dict[str, Any]) -> Iterator[DefinitionError]:
    specs = list(condition_specs(defn))
    if not specs:
        return
    from journeys.conditions import validate_condition

    for where, spec in specs:
        for error in validate_condition(spec):
            inner = error.path if error.path.startswith("/") or not error.path else "/" + error.path
            yield DefinitionError(pointer(*where) + inner, error.message)
