"""The mobile SDKs' uploads, as their source builds them (tests/fixtures/sdks/*.json say where),
against Throughline served as in production (granian), since how the body travels matters:
analytics-kotlin streams its gzip body chunked, with no Content-Length."""

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from config.core.server import web_argv
from profiles.models import Customer, Event, Identity
from tests.conftest import ROOT, _database_url, wait_until
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = ROOT / "tests" / "fixtures" / "sdks"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def server(transactional_db: Any) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict["NAME"]),
    }
    web = subprocess.Popen(
        web_argv(sys.executable, host="127.0.0.1", port=port, workers=1, threads=2),
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="the web server starts")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=15)


def _upload(server: str, recorded: Path, write_key: str) -> requests.Response:
    shape = json.loads(recorded.read_text())
    body = json.dumps(shape["body"]).replace("WRITE_KEY", write_key).encode()
    if shape["gzip"]:
        body = gzip.compress(body)
    headers = dict(shape["headers"])
    if shape.get("basic_auth"):
        headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    # A generator makes requests stream the body chunked, without Content-Length, as
    # HttpURLConnection does after setChunkedStreamingMode(0).
    data: Any = iter([body[:100], body[100:]]) if shape["chunked"] else body
    return requests.post(server + shape["path"], data=data, headers=headers, timeout=10)


@pytest.mark.parametrize("sdk", ["analytics-kotlin", "analytics-swift", "rudder-sdk-android"])
def test_a_mobile_sdk_batch_is_stored_on_one_profile(server: str, sdk: str) -> None:
    source: Any = SourceFactory()
    response = _upload(server, FIXTURES / f"{sdk}.json", source.write_key)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    events = list(Event.objects.filter(source=source))
    assert sorted(e.type for e in events) == ["identify", "screen", "track"]
    user = Identity.objects.get(kind="user_id").customer_id
    assert {Customer.objects.get(id=e.customer_id).merged_into_id or e.customer_id for e in events} == {user}


def test_a_resent_mobile_batch_is_stored_once(server: str) -> None:
    source: Any = SourceFactory()
    for _ in range(2):
        assert _upload(server, FIXTURES / "analytics-kotlin.json", source.write_key).status_code == 200
    assert Event.objects.filter(source=source).count() == 3
