"""POST /v1/decide and GET /api/v1/decisions/{id}, against real PostgreSQL and Redis."""

import base64
import copy
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from config.core import metrics
from journeys import contracts as journey_contracts
from journeys import decide_journeys, decide_recorder
from journeys.demo import VIP_ROUTING
from journeys.models import Decision
from journeys.services import journey_publish, version_create_draft
from profiles.computed_traits import computed_trait_create, definitions_changed
from profiles.models import Customer
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.services import consent_set
from tests.conftest import FastPathClient
from tests.factories import CustomerFactory, IdentityFactory
from tests.journeys.factories import JourneyFactory, JourneyVersionFactory, SegmentMembershipFactory


def customer_with(traits: dict[str, Any], **identities: str) -> Customer:
    customer = CustomerFactory.create(traits=traits)
    for kind, value in identities.items():
        IdentityFactory.create(customer=customer, kind=kind, value=value)
    return customer


def consent(customer: Customer, status: str, *, purpose: str, channel: str = "*") -> None:
    consent_set(customer_id=customer.id, choices=[ConsentChoice(purpose, channel, status)], origin="api", actor="test")


def auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    decide_journeys.forget_compiled()
    yield
    decide_journeys.forget_compiled()


def publish(definition: dict[str, Any], key: str = "vip-routing") -> Any:
    version = JourneyVersionFactory.create(journey=JourneyFactory.create(key=key), number=1, definition=definition)
    journey_publish(version=version)
    decide_journeys.forget_compiled()
    version.refresh_from_db()
    return version


@pytest.fixture
def vip_journey(db: Any) -> Any:
    return publish(copy.deepcopy(VIP_ROUTING))


@pytest.fixture
def post(source: Any) -> Callable[..., Any]:
    """POST /v1/decide as production serves it: through the WSGI fast path (its answers are
    the Django view's: tests/journeys/test_decide_fast_path.py)."""
    client = FastPathClient()

    def send(body: Any, *, write_key: str | None = None, raw: bytes | None = None, **headers: Any) -> Any:
        headers.setdefault("HTTP_AUTHORIZATION", auth(write_key or source.write_key))
        data = raw if raw is not None else orjson.dumps(body)
        return client.post("/v1/decide", data=data, content_type="application/json", **headers)

    return send


def ask(user_id: str = "u-1", **extra: Any) -> dict[str, Any]:
    return {"userId": user_id, "channel": "web", "placement": "support_entry", "context": {"page": "/help"}, **extra}


def test_a_vip_customer_is_routed_to_premium_support(vip_journey: Any, post: Callable[..., Any]) -> None:
    customer_with({"vip": True}, user_id="u-1")

    answer = post(ask("u-1"))

    assert answer.status_code == 200
    body = answer.json()
    assert body["route"] == "premium_support"
    assert body["content"]["headline"] == "A specialist is ready for you"
    assert (body["journey"], body["version"], body["degraded"]) == ("vip-routing", 1, False)


def test_anyone_else_gets_self_service(vip_journey: Any, post: Callable[..., Any]) -> None:
    customer_with({"vip": False}, user_id="u-2")

    assert post(ask("u-2")).json()["route"] == "self_service"


def test_an_unknown_customer_gets_self_service_not_an_error(vip_journey: Any, post: Callable[..., Any]) -> None:
    body = post({"anonymousId": "never-seen", "placement": "support_entry"}).json()

    assert (body["route"], body["degraded"]) == ("self_service", False)
    assert Decision.objects.get(id=body["decision_id"]).explanation["customer_found"] is False


def test_a_merged_profile_is_read_through_the_profile_it_was_merged_into(
    vip_journey: Any, post: Callable[..., Any]
) -> None:
    survivor = CustomerFactory.create(traits={"vip": True})
    merged = customer_with({"vip": False}, user_id="u-old")
    merged.merged_into = survivor
    merged.save()

    body = post(ask("u-old")).json()

    assert body["route"] == "premium_support"
    assert Decision.objects.get(id=body["decision_id"]).customer_id == survivor.id


@pytest.fixture
def big_spender_journey(db: Any) -> Iterator[Any]:
    """VIP routing by a computed trait: a lifetime value above 900."""
    computed_trait_create(name="lifetime_value", kind="sum", event_name="Order Completed", property="total")
    definition = copy.deepcopy(VIP_ROUTING)
    definition["steps"]["is_vip"]["branches"][0]["condition"] = {
        "field": "computed.lifetime_value",
        "op": "gt",
        "value": 900,
    }
    yield publish(definition)
    definitions_changed()


def spender(total: int, **identities: str) -> Customer:
    customer = customer_with({}, **identities)
    Customer.objects.filter(id=customer.id).update(computed_state={"lifetime_value": {"total": total}})
    return customer


def test_a_computed_trait_is_read_from_the_customers_profile(
    big_spender_journey: Any, post: Callable[..., Any]
) -> None:
    spender(950, user_id="u-spender")

    assert post(ask("u-spender")).json()["route"] == "premium_support"


def test_a_merged_profile_s_computed_traits_are_the_survivors(
    big_spender_journey: Any, post: Callable[..., Any]
) -> None:
    survivor = spender(950)
    merged = spender(10, user_id="u-old")
    Customer.objects.filter(id=merged.id).update(merged_into=survivor)

    assert post(ask("u-old")).json()["route"] == "premium_support"


def test_an_unknown_user_id_falls_back_to_the_anonymous_id(vip_journey: Any, post: Callable[..., Any]) -> None:
    customer_with({"vip": True}, anonymous_id="anon-9")

    body = post({"userId": "new-user", "anonymousId": "anon-9", "placement": "support_entry"}).json()

    assert body["route"] == "premium_support"


def test_segment_membership_routes_to_premium(vip_journey: Any, post: Callable[..., Any]) -> None:
    customer = customer_with({}, anonymous_id="anon-7")
    SegmentMembershipFactory.create(segment__key="vip", customer_id=customer.id)

    assert post({"anonymousId": "anon-7", "placement": "support_entry"}).json()["route"] == "premium_support"


def test_the_decision_is_recorded_with_what_each_condition_saw(vip_journey: Any, post: Callable[..., Any]) -> None:
    customer = customer_with({"vip": True}, user_id="u-1")

    decision_id = post(ask("u-1")).json()["decision_id"]

    decision = Decision.objects.get(id=decision_id)
    assert (decision.customer_id, decision.version_id, decision.degraded) == (customer.id, vip_journey.id, False)
    assert decision.result["route"] == "premium_support"
    branch = decision.explanation["journeys"][0]["path"][0]
    assert (branch["step"], branch["branch"], branch["next"]) == ("is_vip", 0, "premium")
    leaves = branch["conditions"][0]["any"]
    assert {"field": "traits.vip", "op": "equals", "value": True, "saw": True, "result": True} in leaves


def test_decisions_api_explains_a_decision(vip_journey: Any, post: Callable[..., Any], api: Callable[..., Any]) -> None:
    customer_with({"vip": False}, user_id="u-3")
    decision_id = post(ask("u-3")).json()["decision_id"]

    answer = api(f"/api/v1/decisions/{decision_id}")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["journey"], body["version"], body["result"]["route"]) == ("vip-routing", 1, "self_service")
    assert body["explanation"]["journeys"][0]["path"][0]["branch"] == "default"


def test_decisions_api_needs_a_staff_token(vip_journey: Any, post: Callable[..., Any], client: Client) -> None:
    decision_id = post(ask()).json()["decision_id"]

    assert client.get(f"/api/v1/decisions/{decision_id}").status_code == 401


def test_decisions_api_unknown_decision_is_404(api: Callable[..., Any]) -> None:
    answer = api("/api/v1/decisions/00000000-0000-0000-0000-000000000000")

    assert (answer.status_code, answer.json()["code"]) == (404, "decision_not_found")


def test_only_the_roots_the_conditions_need_are_loaded(db: Any, post: Callable[..., Any]) -> None:
    publish(
        {
            "trigger": {"type": "decide", "placement": "support_entry"},
            "start": "gold",
            "steps": {
                "gold": {
                    "type": "branch",
                    "branches": [{"condition": {"field": "traits.tier", "op": "equals", "value": "gold"}, "next": "a"}],
                    "default": "b",
                },
                "a": {"type": "route", "destination": "gold_desk"},
                "b": {"type": "route", "destination": "self_service"},
            },
            "default_decision": {"route": "self_service"},
        }
    )
    customer_with({"tier": "gold"}, user_id="u-g")

    with CaptureQueriesContext(connection) as queries:
        body = post(ask("u-g")).json()

    assert body["route"] == "gold_desk"
    statements = " ".join(q["sql"] for q in queries.captured_queries)
    assert "journeys_segmentmembership" not in statements
    assert "profiles_consent" not in statements


def test_consent_is_loaded_when_a_condition_reads_it(db: Any, post: Callable[..., Any]) -> None:
    publish(
        {
            "trigger": {"type": "decide", "placement": "offer"},
            "start": "asked",
            "steps": {
                "asked": {
                    "type": "branch",
                    "branches": [{"condition": {"consent": {"purpose": "marketing", "channel": "sms"}}, "next": "a"}],
                    "default": "b",
                },
                "a": {"type": "route", "destination": "sms_offer"},
                "b": {"type": "route", "destination": "no_offer"},
            },
            "default_decision": {"route": "no_offer"},
        },
        key="offer",
    )
    granted = customer_with({}, user_id="u-yes")
    consent(granted, "granted", purpose="marketing")
    denied = customer_with({}, user_id="u-no")
    consent(denied, "granted", purpose="marketing")
    consent(denied, "denied", purpose="marketing", channel="sms")

    assert post(ask("u-yes", placement="offer")).json()["route"] == "sms_offer"
    assert post(ask("u-no", placement="offer")).json()["route"] == "no_offer"


def test_consent_for_every_channel_answers_for_any_channel(db: Any, post: Callable[..., Any]) -> None:
    definition = {
        "trigger": {"type": "decide", "placement": "offer"},
        "start": "asked",
        "steps": {
            "asked": {
                "type": "branch",
                "branches": [{"condition": {"consent": {"purpose": "marketing", "channel": "whatsapp"}}, "next": "a"}],
                "default": "b",
            },
            "a": {"type": "route", "destination": "whatsapp_offer"},
            "b": {"type": "route", "destination": "no_offer"},
        },
        "default_decision": {"route": "no_offer"},
    }
    publish(definition, key="offer")
    consent(customer_with({}, user_id="u-any"), "granted", purpose="marketing")

    assert post(ask("u-any", placement="offer")).json()["route"] == "whatsapp_offer"


def test_an_unpublished_placement_is_404(vip_journey: Any, post: Callable[..., Any]) -> None:
    answer = post(ask(placement="nowhere"))

    assert (answer.status_code, answer.json()["code"]) == (404, "unknown_placement")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"placement": "support_entry"}, "missing_identity"),
        ({"userId": "u-1"}, "missing_placement"),
        ({"userId": "u-1", "placement": "support_entry", "context": [1]}, "invalid_context"),
        ({"userId": {"a": 1}, "placement": "support_entry"}, "invalid_userId"),
    ],
)
def test_bad_bodies_are_400(vip_journey: Any, post: Callable[..., Any], body: Any, code: str) -> None:
    answer = post(body)

    assert (answer.status_code, answer.json()["code"]) == (400, code)


def test_malformed_json_is_400(vip_journey: Any, post: Callable[..., Any]) -> None:
    answer = post(None, raw=b"{nope")

    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_json")


def test_a_body_over_32_kb_is_413(vip_journey: Any, post: Callable[..., Any]) -> None:
    answer = post(ask(context={"blob": "x" * 40_000}))

    assert (answer.status_code, answer.json()["code"]) == (413, "body_too_large")


def test_no_write_key_is_401(vip_journey: Any, client: Client) -> None:
    answer = client.post("/v1/decide", data=orjson.dumps(ask()), content_type="application/json")

    assert answer.status_code == 401


def test_an_unknown_write_key_is_401(vip_journey: Any, post: Callable[..., Any]) -> None:
    answer = post(ask(), write_key="tlw_not_a_key")

    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_write_key")


def test_the_write_key_may_be_in_the_body(vip_journey: Any, source: Any, client: Client) -> None:
    body = orjson.dumps({**ask(), "writeKey": source.write_key})

    assert client.post("/v1/decide", data=body, content_type="application/json").status_code == 200


def test_a_disabled_source_is_403(vip_journey: Any, source: Any, post: Callable[..., Any]) -> None:
    source.enabled = False
    source.save()

    assert post(ask()).status_code == 403


def test_the_source_rate_limit_applies(vip_journey: Any, post: Callable[..., Any], settings: Any) -> None:
    settings.INGEST_RATE_LIMIT_PER_SECOND = 2
    answers = [post(ask()).status_code for _ in range(6)]

    assert 429 in answers


def test_a_publish_reaches_decide_within_the_generation_check(
    vip_journey: Any, post: Callable[..., Any], django_capture_on_commit_callbacks: Any
) -> None:
    customer_with({"vip": True}, user_id="u-1")
    assert post(ask("u-1")).json()["route"] == "premium_support"
    changed = copy.deepcopy(VIP_ROUTING)
    changed["steps"]["premium"]["destination"] = "concierge"
    draft = version_create_draft(journey=vip_journey.journey, definition=changed)
    with django_capture_on_commit_callbacks(execute=True):
        journey_publish(version=draft)

    time.sleep(decide_journeys.GENERATION_CHECK_SECONDS + 0.05)
    body = post(ask("u-1")).json()

    assert (body["route"], body["version"]) == ("concierge", 2)


def test_without_a_generation_change_the_compiled_journey_is_reused(vip_journey: Any, post: Callable[..., Any]) -> None:
    post(ask())

    with CaptureQueriesContext(connection) as queries:
        post(ask())

    assert not any("journeys_journeyversion" in q["sql"] for q in queries.captured_queries)


# --- Degraded ----------------------------------------------------------------------------------


def degraded_count(reason: str) -> float:
    return metrics.DECIDE_DEGRADED.labels(placement="support_entry", reason=reason)._value.get()


def test_redis_down_answers_the_default_marked_degraded(
    vip_journey: Any, post: Callable[..., Any], redis_unreachable: None
) -> None:
    customer_with({"vip": True}, user_id="u-1")
    before = degraded_count("redis_unavailable")

    answer = post(ask("u-1"))

    assert answer.status_code == 200
    body = answer.json()
    assert (body["route"], body["degraded"], body["reason"]) == ("self_service", True, "redis_unavailable")
    assert degraded_count("redis_unavailable") == before + 1
    decision = Decision.objects.get(id=body["decision_id"])
    assert decision.degraded and decision.explanation["degraded"] == "redis_unavailable"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis(settings: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own, which the test may stop; the app's client points at it."""
    from config.core import redis as tl_redis

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    tl_redis.client.cache_clear()
    yield server
    server.kill()
    server.wait(timeout=10)
    tl_redis.client.cache_clear()


def test_redis_stopped_under_a_live_connection_answers_degraded(
    vip_journey: Any, post: Callable[..., Any], own_redis: subprocess.Popen[bytes]
) -> None:
    customer_with({"vip": True}, user_id="u-1")
    assert post(ask("u-1")).json()["degraded"] is False
    own_redis.terminate()
    own_redis.wait(timeout=10)

    answer = post(ask("u-1"))

    assert answer.status_code == 200
    body = answer.json()
    assert (body["route"], body["degraded"], body["reason"]) == ("self_service", True, "redis_unavailable")


def test_after_redis_returns_decisions_are_whole_again(
    vip_journey: Any, post: Callable[..., Any], settings: Any
) -> None:
    from config.core import redis as tl_redis

    customer_with({"vip": True}, user_id="u-1")
    real = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    tl_redis.client.cache_clear()
    assert post(ask("u-1")).json()["degraded"] is True
    settings.REDIS_URL = real
    tl_redis.client.cache_clear()

    body = post(ask("u-1")).json()

    assert (body["route"], body["degraded"]) == ("premium_support", False)


@pytest.fixture
def database_down(transactional_db: Any) -> Iterator[Callable[[bool], None]]:
    """Switch the test's database connection to a port where nothing listens, and back."""
    port = connection.settings_dict["PORT"]

    def down(is_down: bool) -> None:
        connection.close()
        connection.settings_dict["PORT"] = "1" if is_down else port

    yield down
    down(False)


def test_database_down_answers_degraded_and_keeps_the_decision_until_it_is_back(
    source: Any, client: Client, database_down: Callable[[bool], None]
) -> None:
    publish(copy.deepcopy(VIP_ROUTING))
    customer_with({"vip": True}, user_id="u-1")

    def send() -> Any:
        return client.post(
            "/v1/decide", orjson.dumps(ask("u-1")), "application/json", HTTP_AUTHORIZATION=auth(source.write_key)
        )

    assert send().json()["degraded"] is False
    database_down(True)

    down = send()

    assert down.status_code == 200
    assert (down.json()["route"], down.json()["reason"]) == ("self_service", "database_unavailable")
    assert decide_recorder.decisions_pending() == 1
    database_down(False)
    back = send().json()
    assert back["route"] == "premium_support"
    assert decide_recorder.decisions_pending() == 0
    kept = Decision.objects.get(id=down.json()["decision_id"])
    assert kept.degraded and kept.result["route"] == "self_service"


# --- The live session state ------------------------------------------------------------------------

SESSIONS: dict[Any, Any] = {}


def session_state(customer_id: Any) -> Any:
    """A session provider as orchestration registers one: state by customer, or a store failure."""
    state = SESSIONS.get(customer_id)
    if isinstance(state, Exception):
        raise state
    return state


journey_contracts.register_session_provider(session_state)

CART_HELP = {
    "trigger": {"type": "decide", "placement": "checkout_help"},
    "start": "cart",
    "steps": {
        "cart": {
            "type": "branch",
            "branches": [{"condition": {"field": "session.cart_total", "op": "gte", "value": 100}, "next": "call"}],
            "default": "faq",
        },
        "call": {"type": "route", "destination": "call_back"},
        "faq": {"type": "route", "destination": "faq"},
    },
    "default_decision": {"route": "faq"},
}


def test_a_condition_on_the_live_session_reads_it(db: Any, post: Callable[..., Any]) -> None:
    publish(copy.deepcopy(CART_HELP), key="checkout-help")
    big = customer_with({}, user_id="u-big")
    small = customer_with({}, user_id="u-small")
    SESSIONS[big.id] = {"cart_total": 180}
    SESSIONS[small.id] = {"cart_total": 20}

    assert post(ask("u-big", placement="checkout_help")).json()["route"] == "call_back"
    assert post(ask("u-small", placement="checkout_help")).json()["route"] == "faq"


def test_a_failing_session_store_answers_degraded(db: Any, post: Callable[..., Any]) -> None:
    publish(copy.deepcopy(CART_HELP), key="checkout-help")
    customer = customer_with({}, user_id="u-s")
    SESSIONS[customer.id] = ConnectionError("session store down")

    body = post(ask("u-s", placement="checkout_help")).json()

    assert (body["route"], body["degraded"], body["reason"]) == ("faq", True, "session_unavailable")


def split_journey(holdout: int) -> dict[str, Any]:
    return {
        "trigger": {"type": "decide", "placement": "banner"},
        "start": "split",
        "steps": {
            "split": {
                "type": "random_split",
                "paths": [
                    {"percent": (100 - holdout) // 2, "next": "a"},
                    {"percent": (100 - holdout + 1) // 2, "next": "b"},
                ],
                "holdout": holdout,
            },
            "a": {"type": "route", "destination": "offer_a"},
            "b": {"type": "route", "destination": "offer_b"},
        },
        "default_decision": {"route": "no_offer"},
    }


def test_a_random_split_keeps_each_customer_on_one_path(db: Any, post: Callable[..., Any]) -> None:
    publish(split_journey(holdout=0), key="banner")

    routes = {user: post(ask(user, placement="banner")).json()["route"] for user in [f"u-{i}" for i in range(40)]}
    again = {user: post(ask(user, placement="banner")).json()["route"] for user in routes}

    assert again == routes
    assert set(routes.values()) == {"offer_a", "offer_b"}


def test_the_holdout_gets_the_default_decision(db: Any, post: Callable[..., Any]) -> None:
    publish(split_journey(holdout=100), key="banner")

    body = post(ask("u-1", placement="banner")).json()

    assert (body["route"], body["degraded"]) == ("no_offer", False)
    assert Decision.objects.get(id=body["decision_id"]).explanation["journeys"][0]["outcome"] == "holdout"


THIRDS = {
    "trigger": {"type": "decide", "placement": "banner"},
    "start": "split",
    "steps": {
        "split": {
            "type": "random_split",
            "paths": [
                {"percent": 33.3, "next": "a"},
                {"percent": 33.3, "next": "b"},
                {"percent": 33.4, "next": "c"},
            ],
        },
        "a": {"type": "route", "destination": "offer_a"},
        "b": {"type": "route", "destination": "offer_b"},
        "c": {"type": "route", "destination": "offer_c"},
    },
    "default_decision": {"route": "no_offer"},
}


def test_a_split_in_tenths_of_a_percent_sends_every_customer_down_a_path(db: Any, post: Callable[..., Any]) -> None:
    """33.3/33.3/33.4 adds up to 100, so no customer may fall past the last path (whole-percent
    buckets sent 1 in 100 to the default). 1,500 distinct customers (user ids with no profile yet,
    so the buckets, and this test, are the same on every run); each path's share is within 4
    points of its percent, over three standard deviations of a fair draw of this size."""
    publish(copy.deepcopy(THIRDS), key="banner")
    people = 1500

    routes = [post(ask(f"thirds-{i}", placement="banner")).json()["route"] for i in range(people)]

    shares = {route: routes.count(route) / people * 100 for route in set(routes)}
    assert set(shares) == {"offer_a", "offer_b", "offer_c"}
    assert shares == pytest.approx({"offer_a": 33.3, "offer_b": 33.3, "offer_c": 33.4}, abs=4)


def test_a_step_that_acts_is_not_run_by_decide_and_the_default_answers(db: Any, post: Callable[..., Any]) -> None:
    publish(
        {
            "trigger": {"type": "decide", "placement": "banner"},
            "start": "tag",
            "steps": {
                "tag": {"type": "set_traits", "traits": {"saw_banner": True}, "next": "show"},
                "show": {"type": "route", "destination": "offer_a"},
            },
            "default_decision": {"route": "no_offer"},
        },
        key="banner",
    )
    customer = customer_with({}, user_id="u-tag")

    body = post(ask("u-tag", placement="banner")).json()

    assert body["route"] == "no_offer"
    walked = Decision.objects.get(id=body["decision_id"]).explanation["journeys"][0]
    assert (walked["outcome"], walked["path"][0]["kind"]) == ("unsupported_step", "set_traits")
    customer.refresh_from_db()
    assert customer.traits == {}


def test_an_unknown_placement_is_404_even_with_redis_down(
    vip_journey: Any, post: Callable[..., Any], redis_unreachable: None
) -> None:
    assert post(ask(placement="nowhere")).status_code == 404


# --- Liquid in the answer's content --------------------------------------------------------------


def greeting_journey(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "trigger": {"type": "decide", "placement": "greeting"},
        "start": "hello",
        "steps": {"hello": {"type": "route", "destination": "banner", "content": content}},
        "default_decision": {"route": "banner", "content": {"headline": "Hello {{ event.channel }} visitor"}},
    }


def test_route_content_is_rendered_with_liquid(db: Any, post: Callable[..., Any]) -> None:
    publish(
        greeting_journey({"headline": "Hello {{ profile.first_name }}", "back": "{{ event.properties.page }}"}),
        key="greeting",
    )
    customer_with({"first_name": "Ann"}, user_id="u-ann")

    body = post(ask("u-ann", placement="greeting")).json()

    assert body["content"] == {"headline": "Hello Ann", "back": "/help"}


def test_a_missing_variable_answers_the_default_content_and_says_why(db: Any, post: Callable[..., Any]) -> None:
    publish(greeting_journey({"headline": "Hello {{ profile.first_name }}"}), key="greeting")
    customer_with({}, user_id="u-nameless")

    body = post(ask("u-nameless", placement="greeting")).json()

    assert (body["route"], body["content"]) == ("banner", {"headline": "Hello web visitor"})
    explained = Decision.objects.get(id=body["decision_id"]).explanation["content"]
    assert (explained["missing"], explained["used_default"]) == (["profile.first_name"], True)


def test_route_content_may_read_the_live_session(db: Any, post: Callable[..., Any]) -> None:
    publish(greeting_journey({"headline": "Your cart: {{ session.cart_total }} EUR"}), key="greeting")
    customer = customer_with({}, user_id="u-cart")
    SESSIONS[customer.id] = {"cart_total": 42}

    body = post(ask("u-cart", placement="greeting")).json()

    assert body["content"] == {"headline": "Your cart: 42 EUR"}
