"""The demo's journeys as seeded: the `vip` segment and three published journeys, idempotently,
and the seeded VIP routing answering /v1/decide."""

import base64
import copy
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.test import Client

from journeys import decide_journeys
from journeys.demo import ABANDONED_CART, JOURNEYS, VIP_ROUTING
from journeys.models import Journey, JourneyVersion, Segment, VersionStatus
from journeys.services import journey_create, journey_publish, version_create_draft
from tests.factories import CustomerFactory, IdentityFactory

pytestmark = pytest.mark.django_db


def snapshot() -> list[tuple[Any, ...]]:
    versions = JourneyVersion.objects.order_by("journey__key", "number")
    segments = Segment.objects.order_by("key")
    return [
        *versions.values_list("journey__key", "number", "status", "updated_at"),
        *segments.values_list("key", "updated_at"),
    ]


def test_seed_publishes_the_three_demo_journeys_and_the_vip_segment() -> None:
    call_command("seed_journeys_demo", stdout=StringIO())

    published = dict(
        JourneyVersion.objects.filter(status=VersionStatus.PUBLISHED).values_list("journey__key", "definition")
    )
    assert published == {key: definition for key, (_, _, definition) in JOURNEYS.items()}
    assert Segment.objects.get(key="vip").condition["any"][0]["field"] == "traits.vip"


def test_seeding_twice_changes_nothing() -> None:
    call_command("seed_journeys_demo", stdout=StringIO())
    before = snapshot()

    out = StringIO()
    call_command("seed_journeys_demo", stdout=out)

    assert snapshot() == before
    assert out.getvalue().count("left as it is") == 4


def test_a_version_published_after_the_seed_survives_a_second_seed() -> None:
    call_command("seed_journeys_demo", stdout=StringIO())
    edited = copy.deepcopy(ABANDONED_CART)
    edited["steps"]["wait_for_order"]["timeout"] = {"hours": 2}
    journey_publish(version=version_create_draft(journey=Journey.objects.get(key="abandoned-cart"), definition=edited))

    call_command("seed_journeys_demo", stdout=StringIO())

    versions = Journey.objects.get(key="abandoned-cart").versions
    assert dict(versions.values_list("number", "status")) == {1: VersionStatus.ARCHIVED, 2: VersionStatus.PUBLISHED}
    assert versions.get(number=2).definition == edited


def test_an_edited_segment_is_left_as_it_is() -> None:
    call_command("seed_journeys_demo", stdout=StringIO())
    Segment.objects.filter(key="vip").update(enabled=False, name="Our best customers")

    call_command("seed_journeys_demo", stdout=StringIO())

    assert Segment.objects.filter(key="vip").values_list("enabled", "name").get() == (False, "Our best customers")


def test_a_missing_demo_journey_is_created_beside_the_existing_ones() -> None:
    journey_publish(version=journey_create(key="abandoned-cart", name="Mine", definition=ABANDONED_CART))

    call_command("seed_journeys_demo", stdout=StringIO())

    assert Journey.objects.get(key="abandoned-cart").name == "Mine"
    assert JourneyVersion.objects.filter(status=VersionStatus.PUBLISHED).count() == 3


def test_seed_demo_seeds_the_journeys_too(demo_credentials: Any) -> None:
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())

    assert JourneyVersion.objects.filter(status=VersionStatus.PUBLISHED).count() == 3
    assert JourneyVersion.objects.count() == 3


def test_the_seeded_vip_routing_answers_decide(source: Any, client: Client) -> None:
    call_command("seed_journeys_demo", stdout=StringIO())
    decide_journeys.forget_compiled()
    IdentityFactory.create(customer=CustomerFactory.create(traits={"vip": True}), kind="user_id", value="vip-1")
    basic = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()

    def route(user_id: str) -> str:
        body = orjson.dumps({"userId": user_id, "placement": VIP_ROUTING["trigger"]["placement"]})
        return str(client.post("/v1/decide", body, "application/json", HTTP_AUTHORIZATION=basic).json()["route"])

    assert (route("vip-1"), route("someone-else")) == ("premium_support", "self_service")
