"""Writes of the journeys app: journeys and their versions (draft, publish with migration,
archive), API-triggered enrollments, the durable timer tick, and the privacy and merge hooks."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.db import transaction
from django.utils import timezone

from config.core import metrics, observability
from config.core.errors import BadRequest, Conflict, NotFound
from journeys import on_events, selectors
from journeys.definition import validate_definition
from journeys.engine import machine
from journeys.engine.model import ACTIVE, EnrollmentState
from journeys.models import (
    Decision,
    Enrollment,
    EnrollmentStatus,
    Journey,
    JourneyVersion,
    StepRun,
    Timer,
    VersionStatus,
)
from journeys.world import (
    DbWorld,
    _array_cursor,
    enrollment_state,
    enrollments_save,
)
from profiles import facade as profiles

TICK_BATCH = 500
TICK_MAX_BATCHES = 40


class DefinitionInvalid(BadRequest):
    code = "invalid_definition"


def _check_definition(definition: Any) -> None:
    errors = validate_definition(definition)
    if errors:
        raise DefinitionInvalid(
            f"the definition has {len(errors)} error(s); first: {errors[0].path or '/'}: {errors[0].message}",
            extra={"errors": [error.as_dict() for error in errors]},
        )


# --- journeys and versions -----------------------------------------------------------------------


@transaction.atomic
def journey_create(*, key: str, name: str, definition: dict[str, Any], description: str = "") -> JourneyVersion:
    """Create a journey with its first version as a draft."""
    if Journey.objects.filter(key=key).exists():
        raise Conflict(f"a journey with key {key!r} exists", code="journey_exists")
    journey = Journey.objects.create(key=key, name=name, description=description)
    return version_create_draft(journey=journey, definition=definition)


@transaction.atomic
def version_create_draft(*, journey: Journey, definition: dict[str, Any]) -> JourneyVersion:
    """Add a draft version numbered after the journey's latest. Drafts may be invalid: publish checks."""
    Journey.objects.select_for_update().filter(id=journey.id).first()
    last = JourneyVersion.objects.filter(journey=journey).order_by("-number").values_list("number", flat=True).first()
    return JourneyVersion.objects.create(journey=journey, number=(last or 0) + 1, definition=definition)


def version_update_draft(*, version: JourneyVersion, definition: dict[str, Any]) -> JourneyVersion:
    """Replace a draft's definition. Published and archived versions never change."""
    if version.status != VersionStatus.DRAFT:
        raise Conflict("only a draft can be edited; create a new draft", code="version_not_draft")
    version.definition = definition
    version.save(update_fields=["definition", "updated_at"])
    return version


@dataclass(frozen=True, slots=True)
class MigrationPreview:
    from_version: int | None
    to_version: int
    moves: list[dict[str, Any]]
    stay: list[dict[str, Any]]
    errors: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "moves": self.moves,
            "stay": self.stay,
            "errors": self.errors,
            "moving": sum(m["count"] for m in self.moves),
            "staying": sum(s["count"] for s in self.stay),
        }


def _migration_errors(
    old: JourneyVersion | None, new: JourneyVersion, migration_map: dict[str, str]
) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if not isinstance(migration_map, dict):
        return [{"path": "/migration_map", "message": "must be an object of old step id -> new step id"}]
    if migration_map and old is None:
        return [{"path": "/migration_map", "message": "there is no published version to migrate from"}]
    old_steps = old.definition.get("steps", {}) if old is not None else {}
    new_steps = new.definition.get("steps", {}) if isinstance(new.definition, dict) else {}
    for source, target in migration_map.items():
        where = "/migration_map/" + source.replace("~", "~0").replace("/", "~1")
        if source not in old_steps:
            errors.append(
                {"path": where, "message": f"{source!r} is not a step of version {old.number if old else '-'}"}
            )
        if not isinstance(target, str) or target not in new_steps:
            errors.append({"path": where, "message": f"{target!r} is not a step of version {new.number}"})
    return errors


def version_migration_preview(
    *, version: JourneyVersion, migration_map: dict[str, str] | None = None
) -> MigrationPreview:
    """How many waiting customers publishing `version` with `migration_map` would move where,
    and how many would stay on the version they are on because their step is not mapped."""
    mapping = version.migration_map if migration_map is None else migration_map
    mapping = mapping or {}
    current = JourneyVersion.objects.filter(journey_id=version.journey_id, status=VersionStatus.PUBLISHED).first()
    errors = _migration_errors(current, version, mapping)
    moves: Counter[tuple[str, str]] = Counter()
    stay: list[dict[str, Any]] = []
    if current is not None and current.id != version.id:
        for step, count in sorted(selectors.waiting_counts(version=current).items()):
            target = mapping.get(step)
            if isinstance(target, str) and target in version.definition.get("steps", {}):
                moves[(step, target)] += count
            else:
                stay.append({"step": step, "count": count})
    return MigrationPreview(
        from_version=current.number if current is not None else None,
        to_version=version.number,
        moves=[{"from": a, "to": b, "count": n} for (a, b), n in sorted(moves.items())],
        stay=stay,
        errors=errors,
    )


@transaction.atomic
def journey_publish(
    *, version: JourneyVersion, migration_map: dict[str, str] | None = None, now: datetime | None = None
) -> MigrationPreview:
    """Publish a draft: validate it, archive the published version, and move that version's
    waiting customers whose step is in `migration_map` onto the new version (they enter the
    mapped step afresh). Returns what moved where."""
    when = now or timezone.now()
    version = JourneyVersion.objects.select_for_update().select_related("journey").get(id=version.id)
    if version.status != VersionStatus.DRAFT:
        raise Conflict(
            f"version {version.number} is {version.status}; only a draft can be published", code="version_not_draft"
        )
    _check_definition(version.definition)
    mapping = migration_map or {}
    current = (
        JourneyVersion.objects.select_for_update()
        .select_related("journey")
        .filter(journey_id=version.journey_id, status=VersionStatus.PUBLISHED)
        .first()
    )
    errors = _migration_errors(current, version, mapping)
    if errors:
        raise BadRequest(
            f"migration_map: {errors[0]['message']}", code="invalid_migration_map", extra={"errors": errors}
        )
    preview = version_migration_preview(version=version, migration_map=mapping)
    if current is not None:
        current.status = VersionStatus.ARCHIVED
        current.archived_at = when
        current.save(update_fields=["status", "archived_at", "updated_at"])
    version.status = VersionStatus.PUBLISHED
    version.published_at = when
    version.migration_map = mapping or None
    version.save(update_fields=["status", "published_at", "migration_map", "updated_at"])
    if current is not None and mapping:
        _migrate(current, version, mapping, when)
    transaction.on_commit(on_events.invalidate)
    return preview


def _migrate(old: JourneyVersion, new: JourneyVersion, mapping: dict[str, str], when: datetime) -> None:
    live = on_events.live_version(new)
    world = DbWorld(now=when)
    rows = (
        Enrollment.objects.select_for_update(of=("self",))
        .select_related("journey")
        .filter(version=old, status=EnrollmentStatus.ACTIVE, step__in=list(mapping))
        .order_by("id")
    )
    moved: list[tuple[Enrollment, EnrollmentState]] = []
    for row in rows:
        state = enrollment_state(row)
        machine.migrate(live.compiled, state, world, to_step=mapping[row.step], from_version=str(old.id))
        moved.append((row, state))
    Enrollment.objects.filter(id__in=[row.id for row, _ in moved]).update(version=new)
    world.flush()
    enrollments_save([(row.status, state) for row, state in moved])


@transaction.atomic
def version_archive(*, version: JourneyVersion, now: datetime | None = None) -> JourneyVersion:
    """Archive a version: no new entries. Customers inside finish on it."""
    version = JourneyVersion.objects.select_for_update().get(id=version.id)
    if version.status == VersionStatus.ARCHIVED:
        return version
    version.status = VersionStatus.ARCHIVED
    version.archived_at = now or timezone.now()
    version.save(update_fields=["status", "archived_at", "updated_at"])
    transaction.on_commit(on_events.invalidate)
    return version


# --- enrollments ---------------------------------------------------------------------------------


@transaction.atomic
def enrollment_start(
    *, journey: Journey, customer_id: UUID, properties: dict[str, Any] | None = None, now: datetime | None = None
) -> Enrollment:
    """Enter a customer into an API-triggered journey's published version, as its re-entry
    policy allows; runs it until it waits."""
    customer = profiles.customer_cluster(customer_id=customer_id)
    if customer is None:
        raise NotFound("no such customer", code="customer_not_found")
    version = (
        JourneyVersion.objects.select_related("journey").filter(journey=journey, status=VersionStatus.PUBLISHED).first()
    )
    if version is None:
        raise Conflict("the journey has no published version", code="journey_not_published")
    if version.definition["trigger"]["type"] != "api":
        raise Conflict("the journey is not triggered by the API", code="journey_not_api_triggered")
    live = on_events.live_version(version)
    world = DbWorld(now=now)
    past = selectors.past_entries(pairs={(journey.id, customer.id)}).get((journey.id, customer.id))
    previous: list[tuple[datetime, str]] = []
    if past is not None and past.last_entered_at is not None:
        previous.append((past.last_entered_at, ACTIVE if past.active else "ended"))
    allowed, why = machine.reentry_allows(live.compiled, previous=previous, now=world.now())
    if not allowed:
        raise Conflict(f"the customer cannot enter: {why}", code="reentry_refused")
    from journeys.engine.model import EventView

    event = EventView(
        id=None, name="API Enrollment", type="track", channel="server", properties=properties or {},
        timestamp=world.now(), customer_id=str(customer.id),
    )  # fmt: skip
    started = on_events.enrollment_create(live=live, customer_id=customer.id, world=world, event=event)
    if started is None:
        raise Conflict("the customer is already in the journey", code="reentry_refused")
    row, state = started
    world.flush()
    enrollments_save([(row.status, state)])
    row.refresh_from_db()
    return row


# --- durable timers ------------------------------------------------------------------------------


def timers_tick(
    *,
    now: datetime | None = None,
    batch: int = TICK_BATCH,
    max_batches: int = TICK_MAX_BATCHES,
    on_backlog: Callable[[], None] | None = None,
) -> int:
    """Fire the timers due at `now` (default: the clock), each batch in its own transaction;
    returns how many fired. Safe to run concurrently: timers are claimed FOR UPDATE SKIP
    LOCKED and their enrollments locked (skipping any a router holds; the next tick takes them).
    `on_backlog` is called once, as soon as the first claim comes back full: more are due than
    one batch, and the caller may start more ticks to share them. It is called before this batch
    is fired, so the other ticks claim the next batches while this one works on its own."""
    fired = 0
    for number in range(max_batches):
        count, claimed = _tick_batch(now or timezone.now(), batch, on_full=on_backlog if number == 0 else None)
        fired += count
        if claimed < batch or count == 0:
            break
    return fired


def _tick_batch(now: datetime, batch: int, on_full: Callable[[], None] | None = None) -> tuple[int, int]:
    with transaction.atomic():
        timers = _timers_claim(now, batch)
        if not timers:
            return 0, 0
        if on_full is not None and len(timers) == batch:
            on_full()
        states = _enrollments_lock({t[1] for t in timers})
        mine = [t for t in timers if t[1] in states]
        if len(mine) < len(timers):
            _timers_unclaim([t[0] for t in timers if t[1] not in states])
        if not mine:
            return 0, len(timers)
        wall = timezone.now()
        for timer in mine:
            metrics.TIMER_LAG.observe(max(0.0, (wall - timer[5]).total_seconds()))
        live_by_id = on_events.live_versions({UUID(v) for v in {state.version for state, _ in states.values()}})
        versions = {str(pk): live for pk, live in live_by_id.items()}
        world = DbWorld(now=now)
        tracing = observability.enabled()
        touched: dict[UUID, EnrollmentState] = {}
        for _, enrollment_id, step, visit, kind, _due in mine:
            state, before = states[enrollment_id]
            live = versions.get(state.version)
            if before != EnrollmentStatus.ACTIVE or live is None:
                continue
            touched[enrollment_id] = state
            if not tracing:
                machine.on_timer(live.compiled, state, world, kind=kind, step=step, visit=visit)
                continue
            # In the trace of the event that started the enrollment.
            with observability.span_from(
                "throughline.journey_timer",
                state.state.get("traceparent", ""),
                enrollment_id=str(enrollment_id),
                customer_id=state.customer_id,
                journey=state.journey,
                step=step,
                timer=kind,
            ):
                machine.on_timer(live.compiled, state, world, kind=kind, step=step, visit=visit)
        world.flush()
        enrollments_save([(EnrollmentStatus.ACTIVE, state) for state in touched.values()])
        return len(mine), len(timers)


# The enrollments of a batch's timers, locked; those another transaction holds are skipped (a
# router is moving them; their timers are put back unfired and the next tick takes them).
_ENROLLMENTS_LOCK = (
    "SELECT e.id, j.key, e.version_id, e.customer_id, e.entered_at, e.step, e.visit, e.status, "
    "e.waiting_for::text, e.state::text, e.converted, e.end_reason, e.ended_at "
    "FROM journeys_enrollment e JOIN journeys_journey j ON j.id = e.journey_id "
    "WHERE e.id = ANY(%b::uuid[]) ORDER BY e.id FOR UPDATE OF e SKIP LOCKED"
)


def _enrollments_lock(ids: set[UUID]) -> dict[UUID, tuple[EnrollmentState, str]]:
    """Lock the enrollments (skipping those held elsewhere) and read them as the machine's
    states, with each one's status before the machine runs. One statement with the ids as a
    binary array: the ORM would quote 500 UUIDs into the SQL text and build 500 model dicts."""
    with _array_cursor() as cursor:
        cursor.execute(_ENROLLMENTS_LOCK, [list(ids)], prepare=True)
        found = cursor.fetchall()
    return {
        row[0]: (
            EnrollmentState(
                id=str(row[0]),
                journey=row[1],
                version=str(row[2]),
                customer_id=str(row[3]),
                entered_at=row[4],
                step=row[5],
                visit=row[6],
                status=row[7],
                waiting_for=None if row[8] is None else orjson.loads(row[8]),
                state=orjson.loads(row[9]) or {},
                converted=row[10],
                end_reason=row[11],
                ended_at=row[12],
            ),
            row[7],
        )
        for row in found
    }


# Claims and marks fired in one statement: the UPDATE takes the row locks the claim needs, where
# a SELECT ... FOR UPDATE followed by an UPDATE wrote each timer row twice. Oldest first, in the
# due-time index's order: a tie-break on id would make every claim sort all the due timers
# (10,000 falling due together) to take the first 500.
_TIMERS_CLAIM = (
    "UPDATE journeys_timer SET fired_at = %b WHERE id IN ("
    "SELECT id FROM journeys_timer WHERE fired_at IS NULL AND due_at <= %b ORDER BY due_at LIMIT %b "
    "FOR UPDATE SKIP LOCKED) RETURNING id, enrollment_id, step, visit, kind, due_at"
)


def _timers_claim(now: datetime, batch: int) -> list[tuple[int, UUID, str, int, str, datetime]]:
    """Up to `batch` due timers that no other tick holds, locked and marked fired at `now`."""
    with _array_cursor() as cursor:
        cursor.execute(_TIMERS_CLAIM, [now, now, batch], prepare=True)
        return cursor.fetchall()


def _timers_unclaim(ids: list[int]) -> None:
    """Timers whose enrollment another transaction holds are not fired: the next tick takes them."""
    Timer.objects.filter(id__in=ids).update(fired_at=None)


# --- privacy and merges --------------------------------------------------------------------------


def journeys_on_customers_erased(customer_ids: list[UUID]) -> dict[str, int]:
    """Erase hook: a customer's enrollments (with their history and timers) and decisions go."""
    _, enrollments = Enrollment.objects.filter(customer_id__in=customer_ids).delete()
    _, decisions = Decision.objects.filter(customer_id__in=customer_ids).delete()
    return {
        "journey_enrollments": enrollments.get(Enrollment._meta.label, 0),
        "journey_history": enrollments.get(StepRun._meta.label, 0),
        "journey_decisions": decisions.get(Decision._meta.label, 0),
    }


def journeys_on_customers_merged(merges: dict[UUID, list[UUID]]) -> None:
    """Merge hook (profiles.contracts.on_customers_merged), inside the merge transaction."""
    enrollments_merge(merges=merges)


@transaction.atomic
def enrollments_merge(*, merges: dict[UUID, list[UUID]]) -> int:
    """Merge hook: the merged-away profiles' enrollments move to their survivor ({survivor: merged
    ids}). Where both are active in one journey, the survivor's stays and the other ends (exited,
    "merged"). Two reads for all the merges of a call, then a write per enrollment or decision
    owner moved: most merged-away profiles (anonymous visitors signing in) have neither."""
    survivor_of = {merged: survivor for survivor, merged_ids in merges.items() for merged in merged_ids}
    if not survivor_of:
        return 0
    moved = 0
    rows = list(
        Enrollment.objects.select_for_update()
        .filter(customer_id__in=[*merges, *survivor_of])
        .order_by("id")  # one lock order for every merging transaction
    )
    active_journeys = {
        (row.customer_id, row.journey_id)
        for row in rows
        if row.customer_id in merges and row.status == EnrollmentStatus.ACTIVE
    }
    when = timezone.now()
    for row in rows:
        survivor_id = survivor_of.get(row.customer_id)
        if survivor_id is None:
            continue  # the survivor's own
        fields = ["customer_id", "updated_at"]
        if row.status == EnrollmentStatus.ACTIVE:
            if (survivor_id, row.journey_id) in active_journeys:
                row.status = EnrollmentStatus.EXITED
                row.end_reason = f"merged into {survivor_id}"
                row.ended_at = when
                row.waiting_for = None
                fields += ["status", "end_reason", "ended_at", "waiting_for"]
                Timer.objects.filter(enrollment=row, fired_at__isnull=True).delete()
            else:
                active_journeys.add((survivor_id, row.journey_id))
        row.customer_id = survivor_id
        row.save(update_fields=fields)
        moved += 1
    deciders = set(
        Decision.objects.filter(customer_id__in=list(survivor_of)).values_list("customer_id", flat=True).distinct()
    )
    for survivor_id, merged_ids in merges.items():
        if held := [merged for merged in merged_ids if merged in deciders]:
            Decision.objects.filter(customer_id__in=held).update(customer_id=survivor_id)
    return moved
