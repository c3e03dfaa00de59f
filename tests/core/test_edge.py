"""The /v1 edge: its one body reader, as served by the real web server, and its one rate limiter
when Redis cannot be reached, per endpoint class (config/core/ratelimit.py states the
behaviour; docs/operations.md says why)."""

import base64
import copy
import gzip
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import requests
from django.test import override_settings

from journeys import decide_journeys
from journeys.demo import VIP_ROUTING
from journeys.services import journey_publish
from profiles.models import Event
from tests.conftest import FastPathClient
from tests.journeys.factories import JourneyFactory, JourneyVersionFactory

pytestmark = pytest.mark.django_db(transaction=True)


# --- Chunked bodies, through the web server as production runs it --------------------------------


def _chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """The body as a generator: requests sends it chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_track_body_is_stored(server: str, source: Any) -> None:
    body = orjson.dumps({"userId": "u-1", "event": "Chunked", "messageId": "chunked-1"})

    response = requests.post(f"{server}/v1/track", data=_chunks(body, 10), auth=(source.write_key, ""), timeout=10)

    assert (response.status_code, response.request.headers["Transfer-Encoding"]) == (200, "chunked")
    assert Event.objects.get(message_id="chunked-1").name == "Chunked"


def test_a_chunked_gzip_batch_is_stored(server: str, source: Any) -> None:
    batch = [{"type": "track", "userId": "u-1", "event": "Zipped", "messageId": f"zipped-{i}"} for i in range(50)]

    response = requests.post(
        f"{server}/v1/batch",
        data=_chunks(gzip.compress(orjson.dumps({"batch": batch}))),
        auth=(source.write_key, ""),
        headers={"Content-Encoding": "gzip"},
        timeout=10,
    )

    assert (response.status_code, response.json()["accepted"]) == (200, 50)


def test_a_chunked_body_over_the_limit_is_a_json_413(server: str, source: Any) -> None:
    body = orjson.dumps({"userId": "u-1", "event": "x" * 40_000, "messageId": "too-big"})

    response = requests.post(f"{server}/v1/track", data=_chunks(body), auth=(source.write_key, ""), timeout=10)

    assert (response.status_code, response.headers["Content-Type"], response.json()["code"]) == (
        413,
        "application/json",
        "body_too_large",
    )
    assert not Event.objects.filter(message_id="too-big").exists()


def test_a_chunked_gzip_bomb_is_a_json_413(server: str, source: Any) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (5 * 1024 * 1024) + b"]}")

    response = requests.post(
        f"{server}/v1/batch",
        data=_chunks(bomb),
        auth=(source.write_key, ""),
        headers={"Content-Encoding": "gzip"},
        timeout=10,
    )

    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")


def test_a_chunked_session_patch_is_applied(server: str, source: Any) -> None:
    auth = (source.write_key, "")
    started = requests.post(f"{server}/v1/sessions", json={"userId": "u-1"}, auth=auth, timeout=10).json()

    response = requests.patch(
        f"{server}/v1/sessions/{started['id']}",
        data=_chunks(orjson.dumps({"step": 2}), 3),
        auth=auth,
        headers={"If-Match": "*", "Content-Type": "application/merge-patch+json"},
        timeout=10,
    )

    assert (response.status_code, response.json()["state"]) == (200, {"step": 2})


# --- The rate limit when Redis cannot be reached -------------------------------------------------
# Each class fails open to the process's own count: under the limit a request is served as if
# Redis were there, past it the process still refuses. The counted requests of a test fall in
# one one-second window: a first request (which may be slow: the first of the process loads
# what it needs) is made in the second before, then they start at the start of a second.


def _at_the_start_of_a_second() -> None:
    time.sleep(1 - time.time() % 1)


@override_settings(INGEST_RATE_LIMIT_PER_SECOND=2)
def test_ingestion_with_redis_down_is_limited_by_the_process_count(ingest: Any, redis_unreachable: None) -> None:
    ingest.post("track", {"userId": "u-1", "event": "X"})
    _at_the_start_of_a_second()
    statuses = [ingest.post("track", {"userId": "u-1", "event": "X"}).status_code for _ in range(3)]

    assert (statuses, Event.objects.count()) == ([200, 200, 429], 3)


@override_settings(SESSIONS_RATE_LIMIT_PER_SECOND=3)
def test_sessions_with_redis_down_are_limited_by_the_process_count(
    source: Any, sessions_for: Any, redis_unreachable: None
) -> None:
    web = sessions_for(source)
    started = web.start({"userId": "u-1", "state": {"step": 1}})
    _at_the_start_of_a_second()
    statuses = [web.get(started.json()["id"]).status_code for _ in range(4)]

    assert (started.status_code, statuses) == (201, [200, 200, 200, 429])


@override_settings(API_RATE_LIMIT_PER_SECOND=2)
def test_the_management_api_with_redis_down_is_limited_by_the_process_count(
    api: Callable[..., Any], redis_unreachable: None
) -> None:
    api("/api/v1/customers", user_id="nobody")
    _at_the_start_of_a_second()
    statuses = [api("/api/v1/customers", user_id="nobody").status_code for _ in range(3)]

    assert statuses == [404, 404, 429]


@pytest.fixture
def decide_journey(transactional_db: Any) -> Iterator[None]:
    decide_journeys.forget_compiled()
    version = JourneyVersionFactory.create(
        journey=JourneyFactory.create(key="vip-routing"), number=1, definition=copy.deepcopy(VIP_ROUTING)
    )
    journey_publish(version=version)
    decide_journeys.forget_compiled()
    yield
    decide_journeys.forget_compiled()


@override_settings(INGEST_RATE_LIMIT_PER_SECOND=2)
def test_decide_with_redis_down_answers_degraded_under_the_process_count(
    decide_journey: None, source: Any, redis_unreachable: None
) -> None:
    client = FastPathClient()
    body = orjson.dumps({"userId": "u-1", "placement": "support_entry"})
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    client.post("/v1/decide", data=body, content_type="application/json", HTTP_AUTHORIZATION=auth)
    _at_the_start_of_a_second()
    answers = [
        client.post("/v1/decide", data=body, content_type="application/json", HTTP_AUTHORIZATION=auth) for _ in range(3)
    ]

    assert [(a.status_code, a.json().get("reason")) for a in answers] == [
        (200, "redis_unavailable"),
        (200, "redis_unavailable"),
        (429, None),
    ]
