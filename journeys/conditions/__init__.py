"""The journeys condition language: JSON conditions (schema.json) compiled once to closures and
evaluated over an EvalContext. Pure: imports no Django, so segments, the engine, decide and
simulation share it and it is unit-tested without a database."""

import json
from pathlib import Path

from journeys.conditions.compiler import (
    MISSING,
    Condition,
    ConditionError,
    compile_condition,
    local_now,
    validate_condition,
)
from journeys.conditions.context import NO_HISTORY, EvalContext, EventHistory, ListEventHistory, NoHistory

__all__ = [
    "MISSING",
    "NO_HISTORY",
    "Condition",
    "ConditionError",
    "EvalContext",
    "EventHistory",
    "ListEventHistory",
    "NoHistory",
    "compile_condition",
    "condition_schema",
    "local_now",
    "validate_condition",
]


def condition_schema() -> dict[str, object]:
    """The condition language's JSON Schema (2020-12), for editors and the definition schema."""
    return dict(json.loads((Path(__file__).parent / "schema.json").read_text()))
