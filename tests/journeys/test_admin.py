"""The journeys admin, driven through Django's test client as a logged-in superuser."""

import copy
from typing import Any

import orjson
import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from journeys.demo import ABANDONED_CART, VIP_ROUTING
from journeys.models import EnrollmentStatus, JourneyVersion, Segment, VersionStatus
from journeys.services import journey_publish
from tests.journeys.factories import (
    DecisionFactory,
    EnrollmentFactory,
    JourneyFactory,
    JourneyVersionFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db


def version_form(journey: Any, definition: Any, migration_map: Any = None) -> dict[str, str]:
    return {
        "journey": str(journey.pk),
        "definition": orjson.dumps(definition).decode(),
        "migration_map": "" if migration_map is None else orjson.dumps(migration_map).decode(),
    }


def told(response: Any) -> list[str]:
    """The messages the admin gave the user with this response."""
    return [str(message) for message in get_messages(response.wsgi_request)]


def form_errors(response: Any, field: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(field, []))


def test_a_bad_next_is_refused_with_the_pointer_to_the_step(admin_client: Client) -> None:
    journey = JourneyFactory.create()
    definition = copy.deepcopy(VIP_ROUTING)
    definition["steps"]["is_vip"]["branches"][0]["next"] = "nowhere"

    response = admin_client.post(reverse("admin:journeys_journeyversion_add"), version_form(journey, definition))

    assert response.status_code == 200
    errors = form_errors(response, "definition")
    assert any(error.startswith("/steps/is_vip/branches/0/next: ") and "nowhere" in error for error in errors)
    assert not JourneyVersion.objects.filter(journey=journey).exists()


def test_a_bad_condition_points_inside_the_step(admin_client: Client) -> None:
    journey = JourneyFactory.create()
    definition = copy.deepcopy(VIP_ROUTING)
    definition["steps"]["is_vip"]["branches"][0]["condition"] = {"field": "traits.vip", "op": "nearly", "value": 1}

    response = admin_client.post(reverse("admin:journeys_journeyversion_add"), version_form(journey, definition))

    errors = form_errors(response, "definition")
    assert any(error.startswith("/steps/is_vip/branches/0/condition") for error in errors)


def test_a_valid_draft_is_saved_with_the_next_number(admin_client: Client) -> None:
    journey = JourneyFactory.create()
    JourneyVersionFactory.create(journey=journey, number=1, definition=copy.deepcopy(VIP_ROUTING))

    response = admin_client.post(
        reverse("admin:journeys_journeyversion_add"), version_form(journey, copy.deepcopy(VIP_ROUTING))
    )

    assert response.status_code == 302
    saved = JourneyVersion.objects.get(journey=journey, number=2)
    assert (saved.status, saved.definition["start"]) == (VersionStatus.DRAFT, "is_vip")


def test_a_published_version_cannot_be_edited(admin_client: Client) -> None:
    version = JourneyVersionFactory.create(definition=copy.deepcopy(VIP_ROUTING))
    journey_publish(version=version)
    changed = copy.deepcopy(VIP_ROUTING)
    changed["steps"]["premium"]["destination"] = "elsewhere"

    page = admin_client.get(reverse("admin:journeys_journeyversion_change", args=[version.pk]))
    admin_client.post(
        reverse("admin:journeys_journeyversion_change", args=[version.pk]), version_form(version.journey, changed)
    )

    assert 'name="definition"' not in page.content.decode()
    version.refresh_from_db()
    assert version.definition["steps"]["premium"]["destination"] == "premium_support"


def test_publish_action_publishes_and_archives_the_previous(admin_client: Client) -> None:
    first = JourneyVersionFactory.create(number=1, definition=copy.deepcopy(VIP_ROUTING))
    journey_publish(version=first)
    second = JourneyVersionFactory.create(journey=first.journey, number=2, definition=copy.deepcopy(VIP_ROUTING))

    response = admin_client.post(
        reverse("admin:journeys_journeyversion_changelist"),
        {"action": "publish", "_selected_action": [str(second.pk)]},
    )

    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (VersionStatus.ARCHIVED, VersionStatus.PUBLISHED)
    assert told(response) == [f"{first.journey.key} v2 published"]


def test_publish_action_refuses_an_invalid_draft_with_the_pointer(admin_client: Client) -> None:
    definition = copy.deepcopy(VIP_ROUTING)
    definition["start"] = "missing"
    draft = JourneyVersionFactory.create(definition=definition)

    response = admin_client.post(
        reverse("admin:journeys_journeyversion_changelist"),
        {"action": "publish", "_selected_action": [str(draft.pk)]},
    )

    draft.refresh_from_db()
    assert draft.status == VersionStatus.DRAFT
    assert "/start: no step named 'missing'" in told(response)[0]


def test_archive_action_archives(admin_client: Client) -> None:
    version = JourneyVersionFactory.create(definition=copy.deepcopy(VIP_ROUTING))
    journey_publish(version=version)

    admin_client.post(
        reverse("admin:journeys_journeyversion_changelist"),
        {"action": "archive", "_selected_action": [str(version.pk)]},
    )

    version.refresh_from_db()
    assert version.status == VersionStatus.ARCHIVED


def test_diff_page_shows_what_changed_since_the_previous_version(admin_client: Client) -> None:
    first = JourneyVersionFactory.create(number=1, definition=copy.deepcopy(VIP_ROUTING))
    changed = copy.deepcopy(VIP_ROUTING)
    changed["steps"]["premium"]["destination"] = "concierge"
    second = JourneyVersionFactory.create(journey=first.journey, number=2, definition=changed)

    response = admin_client.get(reverse("admin:journeys_journeyversion_diff", args=[second.pk]))

    assert response.status_code == 200
    lines = {line: kind for kind, line in response.context["lines"]}
    assert lines['-      "destination": "premium_support",'] == "removed"
    assert lines['+      "destination": "concierge",'] == "added"
    assert len([kind for kind, _ in response.context["lines"] if kind in ("added", "removed")]) == 2


def test_the_journey_page_links_each_version_to_its_diff(admin_client: Client) -> None:
    first = JourneyVersionFactory.create(number=1, definition=copy.deepcopy(VIP_ROUTING))
    second = JourneyVersionFactory.create(journey=first.journey, number=2, definition=copy.deepcopy(VIP_ROUTING))

    page = admin_client.get(reverse("admin:journeys_journey_change", args=[first.journey.pk])).content.decode()

    assert reverse("admin:journeys_journeyversion_diff", args=[second.pk]) in page


def test_simulate_form_renders_the_path_and_the_messages(admin_client: Client) -> None:
    version = JourneyVersionFactory.create(definition=copy.deepcopy(ABANDONED_CART))
    url = reverse("admin:journeys_journeyversion_simulate", args=[version.pk])
    profile = {"traits": {"first_name": "Ann"}, "consent": {"marketing": {"push": True, "sms": True, "email": True}}}
    events = [{"event": "Cart Abandoned", "at": "2026-11-23T10:00:00Z", "properties": {"item_count": 2}}]

    response = admin_client.post(
        url, {"profile": orjson.dumps(profile).decode(), "events": orjson.dumps(events).decode()}
    )

    assert response.status_code == 200
    assert response.context["error"] is None
    result = response.context["result"]
    assert [message["channel"] for message in result["messages"]][:1] == ["push"]
    assert any(step.get("step") == "remind" for step in result["path"])
    assert 'id="simulation-result"' in response.content.decode()


def test_simulate_form_says_what_is_wrong_with_the_events(admin_client: Client) -> None:
    version = JourneyVersionFactory.create(definition=copy.deepcopy(ABANDONED_CART))
    url = reverse("admin:journeys_journeyversion_simulate", args=[version.pk])

    response = admin_client.post(
        url, {"profile": '{"traits": {}}', "events": orjson.dumps([{"event": "Cart Abandoned"}]).decode()}
    )

    assert response.context["error"].startswith("/events/0/at")


def test_journey_list_counts_customers_by_how_they_went_through(admin_client: Client) -> None:
    version = JourneyVersionFactory.create(definition=copy.deepcopy(ABANDONED_CART))
    for status, converted in [
        (EnrollmentStatus.ACTIVE, False),
        (EnrollmentStatus.COMPLETED, False),
        (EnrollmentStatus.COMPLETED, False),
        (EnrollmentStatus.EXITED, True),
        (EnrollmentStatus.FAILED, False),
    ]:
        EnrollmentFactory.create(version=version, status=status, converted=converted)

    response = admin_client.get(reverse("admin:journeys_journey_changelist"))

    row = next(j for j in response.context["cl"].result_list if j.pk == version.journey_id)
    counts = {
        name: getattr(row, f"n_{name}") for name in ("entered", "active", "completed", "exited", "converted", "failed")
    }
    assert counts == {"entered": 5, "active": 1, "completed": 2, "exited": 1, "converted": 1, "failed": 1}


def test_segment_with_a_bad_condition_is_refused_with_its_pointer(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:journeys_segment_add"),
        {
            "key": "big-spenders",
            "name": "Big spenders",
            "description": "",
            "condition": orjson.dumps({"all": [{"field": "computed.ltv", "op": "gt"}]}).decode(),
            "enabled": "on",
        },
    )

    errors = form_errors(response, "condition")
    assert any(error.startswith("/all/0") for error in errors)
    assert not Segment.objects.filter(key="big-spenders").exists()


def test_segment_reading_the_event_is_refused(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:journeys_segment_add"),
        {
            "key": "web-visitors",
            "name": "Web visitors",
            "description": "",
            "condition": orjson.dumps({"field": "event.channel", "op": "equals", "value": "web"}).decode(),
            "enabled": "on",
        },
    )

    assert any("a segment is about the customer" in error for error in form_errors(response, "condition"))


def test_segment_with_a_good_condition_is_saved(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:journeys_segment_add"),
        {
            "key": "big-spenders",
            "name": "Big spenders",
            "description": "",
            "condition": orjson.dumps({"field": "computed.ltv", "op": "gt", "value": 500}).decode(),
            "enabled": "on",
        },
    )

    assert response.status_code == 302
    assert Segment.objects.get(key="big-spenders").condition["value"] == 500


def test_read_only_pages_render(admin_client: Client) -> None:
    SegmentFactory.create()
    enrollment = EnrollmentFactory.create()
    decision = DecisionFactory.create(explanation={"journeys": [{"journey": "vip-routing"}]})

    for name in ("enrollment", "steprun", "timer", "decision", "segmentmembership"):
        assert admin_client.get(reverse(f"admin:journeys_{name}_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:journeys_enrollment_change", args=[enrollment.pk])).status_code == 200
    page = admin_client.get(reverse("admin:journeys_decision_change", args=[decision.pk])).content.decode()
    assert "vip-routing" in page


def test_a_draft_shows_who_its_migration_map_would_move_and_publish_moves_them(admin_client: Client) -> None:
    first = JourneyVersionFactory.create(number=1, definition=copy.deepcopy(ABANDONED_CART))
    journey_publish(version=first)
    waiting = EnrollmentFactory.create(version=first, status=EnrollmentStatus.ACTIVE, step="wait_for_order")
    EnrollmentFactory.create(version=first, status=EnrollmentStatus.ACTIVE, step="remind")
    draft = JourneyVersionFactory.create(
        journey=first.journey,
        number=2,
        definition=copy.deepcopy(ABANDONED_CART),
        migration_map={"wait_for_order": "wait_for_order"},
    )

    page = admin_client.get(reverse("admin:journeys_journeyversion_change", args=[draft.pk])).content.decode()
    admin_client.post(
        reverse("admin:journeys_journeyversion_changelist"), {"action": "publish", "_selected_action": [str(draft.pk)]}
    )

    assert "&quot;moving&quot;: 1" in page and "&quot;staying&quot;: 1" in page
    waiting.refresh_from_db()
    assert waiting.version_id == draft.id
