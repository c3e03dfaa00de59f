"""The published decide journeys, compiled once per process.

A decide journey is compiled by the engine (journeys.engine.model.compile_journey), as an
enrollment's is, and kept per placement. The cache follows routing's publish generation
(journeys.on_events.publish_generation, the one the routing handler checks per chunk), read at most
once per GENERATION_CHECK_SECONDS per process: a publish or archive reaches decide within that.
"""

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from journeys.conditions import ConditionError
from journeys.engine.model import CompiledJourney, compile_journey
from journeys.models import JourneyVersion, VersionStatus
from journeys.on_events import publish_generation

logger = logging.getLogger(__name__)

# Routing's publish generation (one aggregate query over the published versions), read at most
# once per GENERATION_CHECK_SECONDS per process.
GENERATION_CHECK_SECONDS = 1.0
_generation: tuple[float, Any] = (0.0, None)


def current_generation() -> Any:
    """The publish generation (DatabaseError when the database is down)."""
    global _generation  # noqa: PLW0603 - the per-process copy
    checked_at, value = _generation
    now = time.monotonic()
    if value is None or now - checked_at >= GENERATION_CHECK_SECONDS:
        value = publish_generation()
        _generation = (now, value)
    return value


@dataclass(frozen=True, slots=True)
class DecideJourney:
    """A published decide journey, compiled by the engine."""

    journey_id: UUID
    journey_key: str
    version_id: UUID
    version_number: int
    placement: str
    engine: CompiledJourney
    default_decision: Mapping[str, Any]
    # The context roots its branch conditions (and its templates) read: loaded before the walk.
    needs: frozenset[str]
    # Route or default content holding Liquid ("{" in a string), and which of the costly template
    # roots it mentions (read only then, as the engine does for message content).
    templated: bool = False
    template_roots: frozenset[str] = frozenset()


def _template_text(steps: Mapping[str, Mapping[str, Any]], default_decision: Mapping[str, Any]) -> str:
    """Every string of the journey's route and default content that could be a template."""
    found: list[str] = []

    def strings(value: Any) -> None:
        if isinstance(value, str):
            if "{" in value:
                found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    for step in steps.values():
        if step.get("type") == "route":
            strings(step.get("content"))
    strings(default_decision.get("content"))
    return "\n".join(found)


def compile_decide_journey(version: JourneyVersion) -> DecideJourney:
    """Compile a decide version (ConditionError on a bad condition)."""
    engine = compile_journey(key=version.journey.key, version_id=str(version.id), definition=version.definition)
    needs: set[str] = set()
    for (step_id, index), condition in engine.conditions.items():
        # Branches only: a request walks no wait_for_event (index -1), nor the trigger or exits.
        if index >= 0 and engine.steps[step_id]["type"] == "branch":
            needs |= condition.needs
    default_decision = engine.definition.get("default_decision") or {}
    text = _template_text(engine.steps, default_decision)
    roots = frozenset(root for root in ("session", "links") if root in text)
    return DecideJourney(
        journey_id=version.journey_id,
        journey_key=version.journey.key,
        version_id=version.id,
        version_number=version.number,
        placement=engine.trigger["placement"],
        engine=engine,
        default_decision=default_decision,
        # A template reading the live session needs it loaded, as a condition would.
        needs=frozenset(needs | (roots & {"session"})),
        templated=bool(text),
        template_roots=roots,
    )


@dataclass
class _Index:
    generation: Any = None
    by_placement: dict[str, list[DecideJourney]] = field(default_factory=dict)


_index = _Index()
_index_lock = threading.Lock()


def _load_index() -> dict[str, list[DecideJourney]]:
    by_placement: dict[str, list[DecideJourney]] = {}
    versions = JourneyVersion.objects.filter(status=VersionStatus.PUBLISHED).select_related("journey")
    for version in versions.order_by("journey__key"):
        trigger = (version.definition or {}).get("trigger") or {}
        if trigger.get("type") != "decide":
            continue
        try:
            compiled = compile_decide_journey(version)
        except (ConditionError, KeyError, TypeError, AttributeError) as error:
            # Publishing validates definitions, so this is a row edited behind the services.
            logger.error("decide journey %s v%s not loaded: %s", version.journey.key, version.number, error)
            continue
        by_placement.setdefault(compiled.placement, []).append(compiled)
    return by_placement


def placement_journeys(placement: str, generation: Any) -> list[DecideJourney]:
    """The placement's published decide journeys, in journey key order. Reloaded when the
    generation moved; with generation None (unknown: the database could not be asked) whatever
    is cached, loading once if nothing is. Raises DatabaseError only when a load was needed and
    failed."""
    global _index  # noqa: PLW0603 - the per-process cache
    current = _index
    if current.generation is not None and (generation is None or current.generation == generation):
        return current.by_placement.get(placement, [])
    with _index_lock:
        if _index is not current and (generation is None or _index.generation == generation):
            return _index.by_placement.get(placement, [])
        loaded = _load_index()
        # Unknown generation: keep it unknown, so the next request that reads one reloads.
        _index = _Index(generation=generation or "unknown", by_placement=loaded)
        return loaded.get(placement, [])


def placement_journeys_cached(placement: str) -> list[DecideJourney]:
    """What this process has compiled for the placement, without asking the database."""
    return _index.by_placement.get(placement, [])


def forget_compiled() -> None:
    """Drop this process's compiled journeys and its copy of the generation (tests; the
    generation does it otherwise)."""
    global _index, _generation  # noqa: PLW0603 - the per-process cache
    with _index_lock:
        _index = _Index()
        _generation = (0.0, None)
