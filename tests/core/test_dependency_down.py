"""A dependency down is a JSON 503 with Retry-After, never an HTML page or a 500; any other
unexpected error is a JSON 500 in the one error shape, in DEBUG as in production; the admin
keeps Django's pages."""

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
import requests
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.core.errors import DEPENDENCY_RETRY_AFTER_SECONDS
from config.core.signing import stripe_sign
from tests.conftest import ROOT, web_server
from tests.throwaway import ThrowawayPostgres, throwaway_postgres

RETRY_AFTER = str(DEPENDENCY_RETRY_AFTER_SECONDS)
WEBHOOK_SECRET = "whsec-test-only"


# --- Raised by a view: in-process, with views of this module's own ------------------------------


class DatabaseGone(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request: Request) -> Response:
        raise psycopg.OperationalError("connection to server at 127.0.0.1 port 5432 failed: Connection refused")


class Broken(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


def broken_admin_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in the admin")


urlpatterns = [
    path("api/v1/database-gone", DatabaseGone.as_view()),
    path("api/v1/broken", Broken.as_view()),
    path("admin/broken", broken_admin_view),
]

DEBUG_AND_NOT = pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])


@pytest.fixture
def web(settings: Any, debug: bool) -> Client:
    settings.DEBUG = debug
    return Client(raise_request_exception=False)


@DEBUG_AND_NOT
@pytest.mark.urls(__name__)
def test_a_database_error_is_a_json_503_with_retry_after_naming_the_database(web: Client) -> None:
    response = web.get("/api/v1/database-gone")

    assert (response.status_code, response["Content-Type"], response["Retry-After"]) == (
        503,
        "application/json",
        RETRY_AFTER,
    )
    assert response.json() == {
        "detail": "database unavailable, retry later",
        "code": "dependency_unavailable",
        "dependency": "database",
    }


@DEBUG_AND_NOT
@pytest.mark.urls(__name__)
def test_any_other_unexpected_error_is_a_json_500(web: Client) -> None:
    response = web.get("/api/v1/broken")

    assert (response.status_code, response["Content-Type"]) == (500, "application/json")
    assert response.json() == {"detail": "internal server error", "code": "server_error"}


@DEBUG_AND_NOT
@pytest.mark.urls(__name__)
def test_the_admin_keeps_django_s_500_page(web: Client) -> None:
    response = web.get("/admin/broken")

    assert (response.status_code, response["Content-Type"].split(";")[0]) == (500, "text/html")


# --- PostgreSQL stopped under the production web server -----------------------------------------


def _manage(database_url: str, *args: str) -> str:
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], env=environ, cwd=ROOT, capture_output=True, check=True, timeout=300
    )
    return done.stdout.decode()


_SEED = f"""
import json
from channels.services.webhook_secrets import webhook_secret_set
from journeys.demo import VIP_ROUTING
from journeys.services import journey_publish
from tests.factories import ApiTokenFactory, SourceFactory
from tests.journeys.factories import JourneyFactory, JourneyVersionFactory
journey = JourneyFactory.create(key="vip-routing")
journey_publish(version=JourneyVersionFactory.create(journey=journey, number=1, definition=VIP_ROUTING))
source = SourceFactory.create(channel="chat")
webhook_secret_set(source_id=source.id, provider="chat", secret={WEBHOOK_SECRET!r})
print(json.dumps({{"write_key": source.write_key, "source": str(source.id), "token": ApiTokenFactory().secret}}))
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[ThrowawayPostgres, str, dict[str, str]]]:
    """A PostgreSQL of this module's own, migrated, with a source and an API token: the server,
    its database URL, and the secrets."""
    with throwaway_postgres() as server:
        url = server.create_database("throughline")
        _manage(url, "migrate", "-v0")
        seeded = orjson.loads(_manage(url, "shell", "-c", _SEED).strip().splitlines()[-1])
        yield server, url, seeded


class Calls:
    """What sources, providers, operators and probes call, as they call it."""

    def __init__(self, base: str, seeded: dict[str, str]):
        self.base = base
        self.seeded = seeded
        self.auth = {"Authorization": "Basic " + base64.b64encode(f"{seeded['write_key']}:".encode()).decode()}
        self.n = 0

    def _message(self, **fields: Any) -> dict[str, Any]:
        self.n += 1
        return {"userId": "u-1", "messageId": f"m-{time.time_ns()}-{self.n}", **fields}

    def every(self, session_id: str) -> dict[str, requests.Response]:
        b, auth = self.base, self.auth
        data = {"text": "hi", "customer": {"user_id": "u-1"}}
        body = orjson.dumps({"id": f"evt-{time.time_ns()}", "type": "message.created", "data": data})
        signed = {"Throughline-Signature": stripe_sign(WEBHOOK_SECRET, body, int(time.time()))}
        token = {"Authorization": f"Bearer {self.seeded['token']}"}
        version = requests.get(f"{b}/v1/sessions/{session_id}", headers=auth, timeout=10).headers.get("ETag", '"1"')
        patch_headers = {**auth, "Content-Type": "application/merge-patch+json", "If-Match": version}
        return {
            "batch": requests.post(
                f"{b}/v1/batch", json={"batch": [self._message(type="track", event="X")]}, headers=auth, timeout=10
            ),
            "track": requests.post(f"{b}/v1/track", json=self._message(event="X"), headers=auth, timeout=10),
            "identify": requests.post(
                f"{b}/v1/identify", json=self._message(traits={"plan": "pro"}), headers=auth, timeout=10
            ),
            "session get": requests.get(f"{b}/v1/sessions/{session_id}", headers=auth, timeout=10),
            "session patch": requests.patch(
                f"{b}/v1/sessions/{session_id}", data=b'{"state": {"step": 2}}', headers=patch_headers, timeout=10
            ),
            "customers": requests.get(f"{b}/api/v1/customers", params={"user_id": "u-1"}, headers=token, timeout=10),
            "webhook": requests.post(
                f"{b}/v1/webhooks/chat/{self.seeded['source']}",
                data=body,
                headers={**signed, "Content-Type": "application/json"},
                timeout=10,
            ),
            "readyz": requests.get(f"{b}/readyz", timeout=10),
        }

    def decide(self) -> requests.Response:
        ask = {"userId": "u-1", "channel": "web", "placement": "support_entry"}
        return requests.post(f"{self.base}/v1/decide", json=ask, headers=self.auth, timeout=10)


def _what(response: requests.Response) -> tuple[int, str, str | None, Any]:
    return (
        response.status_code,
        response.headers.get("Content-Type", ""),
        response.headers.get("Retry-After"),
        response.json().get("code") if response.headers.get("Content-Type") == "application/json" else response.text,
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_down_is_a_json_503_everywhere_and_recovery_needs_no_restart(
    postgres: tuple[ThrowawayPostgres, str, dict[str, str]], mode: str
) -> None:
    server, url, seeded = postgres
    # One thread: the connection every call uses is the one the outage broke.
    with web_server(threads=1, DATABASE_URL=url) as (base, _):
        calls = Calls(base, seeded)
        started = requests.post(f"{base}/v1/sessions", json={"userId": "u-1"}, headers=calls.auth, timeout=10)
        assert started.ok, started.text
        session_id = started.json()["id"]
        server.stop(mode)
        try:
            down = calls.every(session_id)
            decide_down = calls.decide()
        finally:
            server.start()
        up = calls.every(session_id)
        decide_up = calls.decide()

    assert {name: _what(r) for name, r in down.items()} == dict.fromkeys(
        down, (503, "application/json", RETRY_AFTER, "dependency_unavailable")
    )
    assert {r.json()["dependency"] for r in down.values()} == {"database"}
    assert not [r.text for r in down.values() if url in r.text or str(server.port) in r.text]
    # decide keeps its documented answer: the default decision, marked degraded.
    assert (decide_down.status_code, decide_down.json()["reason"]) == (200, "database_unavailable")
    assert {name: r.status_code for name, r in up.items()} == dict.fromkeys(up, 200)
    assert (decide_up.status_code, decide_up.json().get("degraded")) == (200, False)
