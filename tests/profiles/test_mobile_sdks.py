"""The mobile SDKs' uploads, as their source builds them (tests/fixtures/sdks/*.json say where),
against Throughline served as in production (granian), since how the body travels matters:
analytics-kotlin streams its gzip body chunked, with no Content-Length."""

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from profiles.models import Customer, Event, Identity
from tests.conftest import ROOT
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = ROOT / "tests" / "fixtures" / "sdks"


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
