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
from journeys.services import journey_create, journey_publish
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
    assert out.getvalue().count("(unchanged)") == 3


def test_a_journey_that_differs_from_the_demo_gets_a_new_published_version() -> None:
    older = copy.deepcopy(ABANDONED_CART)
    older["steps"]["wait_for_order"]["timeout"] = {"hours": 2}
    journey_publish(version=journey_create(key="abandoned-cart", name="Abandoned cart recovery", definition=older))

    call_command("seed_journeys_demo", stdout=StringIO())

    versions = dict(Journey.objects.get(key="abandoned-cart").versions.values_list("number", "status"))
    assert versions == {1: VersionStatus.ARCHIVED, 2: VersionStatus.PUBLISHED}


def test_seed_demo_seeds_the_journeys_too() -> None:
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
