"""Versions: customers stay on the version they entered with; a migration map moves waiting
customers to the new version, and its preview says beforehand how many move where."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from config.core.errors import BadRequest, Conflict
from journeys.models import Enrollment, JourneyVersion, StepRun, Timer, VersionStatus
from journeys.services import (
    DefinitionInvalid,
    enrollment_start,
    journey_create,
    journey_publish,
    timers_tick,
    version_archive,
    version_create_draft,
    version_migration_preview,
)
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

V1: dict[str, Any] = {
    "trigger": {"type": "api"},
    "entry": {"reentry": "every_time"},
    "start": "first_wait",
    "steps": {
        "first_wait": {"type": "wait", "duration": {"days": 1}, "next": "second_wait"},
        "second_wait": {"type": "wait", "duration": {"days": 1}, "next": "done"},
        "done": {"type": "exit"},
    },
}
V2: dict[str, Any] = {
    "trigger": {"type": "api"},
    "entry": {"reentry": "every_time"},
    "start": "pause",
    "steps": {
        "pause": {"type": "wait", "duration": {"hours": 2}, "next": "thanks"},
        "thanks": {"type": "route", "destination": "thanks"},
    },
}


@pytest.fixture
def v1() -> JourneyVersion:
    version = journey_create(key="versions", name="Versions", definition=V1)
    journey_publish(version=version)
    version.refresh_from_db()
    return version


@pytest.fixture
def waiting(v1: JourneyVersion) -> list[Enrollment]:
    """Three customers on v1: two at first_wait, one moved on to second_wait."""
    start = timezone.now() - timedelta(days=1, hours=1)
    late = enrollment_start(journey=v1.journey, customer_id=CustomerFactory.create().id, now=start)
    timers_tick(now=start + timedelta(days=1))
    others = [enrollment_start(journey=v1.journey, customer_id=CustomerFactory.create().id) for _ in range(2)]
    late.refresh_from_db()
    assert late.step == "second_wait"
    return [late, *others]


def test_preview_counts_who_would_move_where_and_who_stays(v1: JourneyVersion, waiting: list[Enrollment]) -> None:
    v2 = version_create_draft(journey=v1.journey, definition=V2)
    preview = version_migration_preview(version=v2, migration_map={"first_wait": "pause"}).as_dict()
    assert preview["moves"] == [{"from": "first_wait", "to": "pause", "count": 2}]
    assert preview["stay"] == [{"step": "second_wait", "count": 1}]
    assert (preview["from_version"], preview["to_version"], preview["moving"], preview["staying"]) == (1, 2, 2, 1)
    assert Enrollment.objects.filter(version=v1).count() == 3  # a preview changes nothing


def test_publish_with_a_map_moves_waiting_customers_onto_the_new_step(
    v1: JourneyVersion, waiting: list[Enrollment]
) -> None:
    late, *moved = waiting
    v2 = version_create_draft(journey=v1.journey, definition=V2)
    at = timezone.now()
    journey_publish(version=v2, migration_map={"first_wait": "pause"}, now=at)
    v1.refresh_from_db()
    assert v1.status == VersionStatus.ARCHIVED
    for enrollment in moved:
        enrollment.refresh_from_db()
        assert (enrollment.version_id, enrollment.step) == (v2.id, "pause")
        assert Timer.objects.get(enrollment=enrollment, fired_at__isnull=True).due_at == at + timedelta(hours=2)
        assert StepRun.objects.get(enrollment=enrollment, kind="migration").detail["to_step"] == "pause"
    late.refresh_from_db()
    assert (late.version_id, late.step) == (v1.id, "second_wait")
    # Both versions keep running: v2's customers route after 2 hours, v1's finish on v1.
    timers_tick(now=at + timedelta(days=2))
    for enrollment in moved:
        enrollment.refresh_from_db()
        assert enrollment.state["routes"][0]["destination"] == "thanks"
    late.refresh_from_db()
    assert (late.status, late.step) == ("completed", "done")


def test_without_a_map_everyone_stays_on_the_version_they_entered(
    v1: JourneyVersion, waiting: list[Enrollment]
) -> None:
    v2 = version_create_draft(journey=v1.journey, definition=V2)
    journey_publish(version=v2)
    assert Enrollment.objects.filter(version=v1, status="active").count() == 3
    newcomer = enrollment_start(journey=v1.journey, customer_id=CustomerFactory.create().id)
    assert (newcomer.version_id, newcomer.step) == (v2.id, "pause")


def test_a_map_naming_unknown_steps_is_refused_with_paths(v1: JourneyVersion) -> None:
    v2 = version_create_draft(journey=v1.journey, definition=V2)
    with pytest.raises(BadRequest) as caught:
        journey_publish(version=v2, migration_map={"first_wait": "nowhere", "ghost": "pause"})
    paths = {error["path"] for error in caught.value.extra["errors"]}
    assert paths == {"/migration_map/first_wait", "/migration_map/ghost"}
    v2.refresh_from_db()
    assert v2.status == VersionStatus.DRAFT


def test_an_invalid_definition_cannot_be_published(v1: JourneyVersion) -> None:
    broken: dict[str, Any] = {**V2, "steps": {**V2["steps"], "pause": {**V2["steps"]["pause"], "next": "missing"}}}
    v2 = version_create_draft(journey=v1.journey, definition=broken)
    with pytest.raises(DefinitionInvalid) as caught:
        journey_publish(version=v2)
    assert caught.value.extra["errors"][0]["path"] == "/steps/pause/next"


def test_only_a_draft_can_be_published(v1: JourneyVersion) -> None:
    with pytest.raises(Conflict):
        journey_publish(version=v1)


def test_an_archived_journey_takes_no_one_new(v1: JourneyVersion) -> None:
    version_archive(version=v1)
    with pytest.raises(Conflict):
        enrollment_start(journey=v1.journey, customer_id=CustomerFactory.create().id)
