"""Decisions written behind the answer (DECIDE_RECORD_LINGER_MS > 0): every answered decision
reaches the database, its id resolves at once, and a clean exit writes what a process held."""

import base64
import copy
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
import requests
from django.db import connection
from django.test import Client
from django.utils import timezone

from journeys import decide, decide_journeys, decide_recorder
from journeys.demo import VIP_ROUTING
from journeys.models import Decision
from journeys.services import journey_publish
from tests.conftest import wait_until, web_server
from tests.journeys.factories import DecisionFactory, JourneyFactory, JourneyVersionFactory


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    decide_journeys.forget_compiled()
    yield
    decide_recorder.recorder.flush()
    decide_journeys.forget_compiled()
    # The recorder's thread gives its connection back when idle, so the test database can go.
    wait_until(lambda: not decide_recorder.recorder.connected, timeout=decide_recorder.IDLE_CLOSE_SECONDS + 5)


@pytest.fixture
def vip_journey(transactional_db: Any) -> Any:
    version = JourneyVersionFactory.create(
        journey=JourneyFactory.create(key="vip-routing"), number=1, definition=copy.deepcopy(VIP_ROUTING)
    )
    journey_publish(version=version)
    decide_journeys.forget_compiled()
    return version


def auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture
def post(source: Any, client: Client) -> Callable[[], Any]:
    def send() -> Any:
        body = orjson.dumps({"userId": "u-1", "placement": "support_entry"})
        return client.post("/v1/decide", body, "application/json", HTTP_AUTHORIZATION=auth(source.write_key))

    return send


def test_a_decision_is_written_by_the_recorder_within_the_linger(
    vip_journey: Any, post: Callable[[], Any], settings: Any
) -> None:
    settings.DECIDE_RECORD_LINGER_MS = 300

    decision_id = post().json()["decision_id"]

    assert not Decision.objects.filter(id=decision_id).exists()
    wait_until(Decision.objects.filter(id=decision_id).exists, timeout=5, message="the recorder writes it")


def test_many_decisions_are_written_together_and_none_is_lost(
    vip_journey: Any, post: Callable[[], Any], settings: Any
) -> None:
    settings.DECIDE_RECORD_LINGER_MS = 50
    settings.DECIDE_RECORD_MAX_BATCH = 7

    ids = {post().json()["decision_id"] for _ in range(40)}

    wait_until(lambda: Decision.objects.filter(id__in=ids).count() == 40, timeout=10, message="all 40 written")


def test_a_decision_this_process_holds_resolves_through_the_api(
    vip_journey: Any, post: Callable[[], Any], api: Callable[..., Any], settings: Any
) -> None:
    settings.DECIDE_RECORD_LINGER_MS = 60_000
    decision_id = post().json()["decision_id"]

    answer = api(f"/api/v1/decisions/{decision_id}")

    assert (answer.status_code, answer.json()["result"]["route"]) == (200, "self_service")


def test_a_decision_another_process_still_holds_is_waited_for(vip_journey: Any, settings: Any) -> None:
    settings.DECIDE_RECORD_LINGER_MS = 100
    decision_id = decide_recorder.new_decision_id()

    def written_elsewhere() -> None:
        DecisionFactory.create(id=decision_id)
        connection.close()

    threading.Timer(0.3, written_elsewhere).start()

    assert decide.decision_get(decision_id=decision_id) is not None


def test_an_unknown_decision_id_from_long_ago_is_not_waited_for(transactional_db: Any) -> None:
    an_hour_ago = int((timezone.now() - timedelta(hours=1)).timestamp() * 1000)
    decision_id = UUID(int=(an_hour_ago << 80) | (0x7 << 76) | (0x2 << 62))
    started = time.monotonic()

    assert decide.decision_get(decision_id=decision_id) is None
    assert time.monotonic() - started < 0.5


def test_decision_ids_say_when_they_were_made() -> None:
    before = time.time()

    decision_id = decide_recorder.new_decision_id()

    assert decision_id.version == 7
    assert before - 0.002 <= (decision_id.int >> 80) / 1000 <= time.time()


def test_a_clean_shutdown_writes_every_decision_answered(vip_journey: Any, source: Any) -> None:
    """The web server, as `manage.py serve` runs it, stopped with SIGTERM (its graceful stop)
    while its worker holds answered decisions that the linger (60 s here) would not have written
    yet: all of them are written."""
    with web_server(threads=4, DJANGO_SETTINGS_MODULE="tests.journeys.decide_linger_settings") as (base, web):
        ids = []
        for n in range(20):
            answer = requests.post(
                f"{base}/v1/decide",
                data=orjson.dumps({"userId": f"u-{n}", "placement": "support_entry"}),
                auth=(source.write_key, ""),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["decision_id"])
        assert not Decision.objects.filter(id__in=ids).exists()
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)

    assert Decision.objects.filter(id__in=ids).count() == 20
