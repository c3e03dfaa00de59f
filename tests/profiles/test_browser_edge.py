"""What web pages and the browser SDKs call, as they call it: the one-letter paths and /v1/b with
text/plain bodies carrying writeKey, CORS (preflight, headers on every answer), each source's
allowed origins, the settings documents, and the 429 headers the SDKs read."""

from typing import Any

import orjson
import pytest
from django.test import Client

from profiles.models import Event, QuarantinedMessage
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

PAGE = "https://shop.example.com"
SHORT_CALLS: dict[str, dict[str, Any]] = {
    "t": {"type": "track", "event": "Plan Chosen"},
    "p": {"type": "page", "name": "Pricing"},
    "s": {"type": "screen", "name": "Home"},
    "i": {"type": "identify", "traits": {"plan": "pro"}},
    "g": {"type": "group", "groupId": "acme"},
    "a": {"type": "alias", "previousId": "crm-88"},
}


def _beacon(client: Client, path: str, body: dict[str, Any], **headers: Any) -> Any:
    """A POST as analytics-next's fetch or a beacon sends it: JSON as text/plain, no Basic auth."""
    return client.post(path, data=orjson.dumps(body), content_type="text/plain;charset=UTF-8", **headers)


@pytest.mark.parametrize("letter", SHORT_CALLS)
def test_each_one_letter_path_stores_its_call(client: Client, source: Any, letter: str) -> None:
    message = {**SHORT_CALLS[letter], "userId": "web-1042", "writeKey": source.write_key, "messageId": "m-1"}
    response = _beacon(client, f"/v1/{letter}", message, HTTP_ORIGIN=PAGE)
    assert (response.status_code, response["Access-Control-Allow-Origin"]) == (200, "*")
    assert Event.objects.get().type == SHORT_CALLS[letter]["type"]


def test_b_takes_a_batch_with_the_write_key_in_the_body(client: Client, source: Any) -> None:
    batch = {"batch": [{**SHORT_CALLS["t"], "anonymousId": "a-1"}, {**SHORT_CALLS["p"], "anonymousId": "a-1"}]}
    response = _beacon(client, "/v1/b", {**batch, "writeKey": source.write_key}, HTTP_ORIGIN=PAGE)
    assert response.json()["accepted"] == 2


def test_a_beacon_names_its_write_key_in_the_query_string(client: Client, source: Any) -> None:
    batch = {"batch": [{**SHORT_CALLS["t"], "anonymousId": "a-1"}], "sentAt": "2026-12-07T10:00:00Z"}
    response = _beacon(client, f"/beacon/v1/batch?writeKey={source.write_key}", batch, HTTP_ORIGIN=PAGE)
    assert response.json()["accepted"] == 1


def test_the_short_and_long_names_share_deduplication(client: Client, ingest: Any, source: Any) -> None:
    message = {"userId": "u", "event": "X", "messageId": "once"}
    ingest.post("track", message)
    response = _beacon(client, "/v1/t", {**message, "writeKey": source.write_key})
    assert response.json()["duplicates"] == 1


def test_malformed_json_on_a_short_path_is_quarantined_with_cors(client: Client, ingest: Any) -> None:
    response = client.post(
        "/v1/t", data=b"{not json", content_type="text/plain", HTTP_AUTHORIZATION=ingest.auth(), HTTP_ORIGIN=PAGE
    )
    assert (response.status_code, response["Access-Control-Allow-Origin"]) == (400, "*")
    assert QuarantinedMessage.objects.get().reason == "malformed_json"


def test_a_short_path_has_the_message_size_limit(client: Client, source: Any) -> None:
    message = {"userId": "u", "event": "X", "properties": {"blob": "x" * 40_000}, "writeKey": source.write_key}
    response = _beacon(client, "/v1/t", message, HTTP_ORIGIN=PAGE)
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")


def test_a_preflight_is_answered_and_cached(client: Client) -> None:
    response = client.options(
        "/v1/batch",
        HTTP_ORIGIN=PAGE,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,anonymousid,sentat",
    )
    assert response.status_code == 200
    assert response["Access-Control-Max-Age"] == "7200"
    allowed = set(response["Access-Control-Allow-Headers"].split(", "))
    assert {"authorization", "content-type", "anonymousid", "sentat", "x-retry-count"} <= allowed
    assert not Event.objects.exists()


def test_the_rate_limit_answer_carries_what_the_sdks_read(client: Client, source: Any, settings: Any) -> None:
    settings.INGEST_RATE_LIMIT_PER_SECOND = 0
    response = _beacon(client, "/v1/t", {"userId": "u", "event": "X", "writeKey": source.write_key}, HTTP_ORIGIN=PAGE)
    assert response.status_code == 429
    assert (response["Retry-After"], response["X-RateLimit-Reset"]) == ("1", "1")
    assert {"Retry-After", "X-RateLimit-Reset"} <= set(response["Access-Control-Expose-Headers"].split(", "))


def test_an_origin_the_source_does_not_allow_is_refused(client: Client) -> None:
    source: Any = SourceFactory(allowed_origins=[PAGE])
    message = {"userId": "u", "event": "X", "writeKey": source.write_key}
    refused = _beacon(client, "/v1/t", message, HTTP_ORIGIN="https://elsewhere.example")
    # Readable by the page (CORS headers), so the SDK drops the call instead of retrying it.
    assert (refused.status_code, refused.json()["code"], refused["Access-Control-Allow-Origin"]) == (
        403,
        "origin_not_allowed",
        "*",
    )
    assert _beacon(client, "/v1/t", message, HTTP_ORIGIN=PAGE).status_code == 200
    assert _beacon(client, "/v1/t", message).status_code == 200  # a server: no Origin
    assert Event.objects.count() == 2


def test_the_segment_settings_point_the_sdk_back_here(client: Client, source: Any) -> None:
    response = client.get(f"/v1/projects/{source.write_key}/settings", HTTP_ORIGIN=PAGE)
    segment = response.json()["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (source.write_key, "testserver/v1", "http")
    assert response["Access-Control-Allow-Origin"] == "*"


def test_settings_for_an_unknown_write_key_are_a_401(client: Client) -> None:
    response = client.get("/v1/projects/tlw_nobody/settings")
    assert (response.status_code, response.json()["code"]) == (401, "invalid_write_key")


def test_settings_refuse_an_origin_the_source_does_not_allow(client: Client) -> None:
    source: Any = SourceFactory(allowed_origins=[PAGE])
    response = client.get(f"/v1/projects/{source.write_key}/settings", HTTP_ORIGIN="https://elsewhere.example")
    assert response.status_code == 403


def test_the_rudderstack_source_config_takes_basic_auth(client: Client, ingest: Any, source: Any) -> None:
    response = client.get("/sourceConfig/?p=npm&v=3.34.1", HTTP_AUTHORIZATION=ingest.auth(), HTTP_ORIGIN=PAGE)
    config = response.json()["source"]
    assert (config["id"], config["enabled"], config["destinations"]) == (str(source.id), True, [])


def test_a_disabled_source_has_no_source_config(client: Client) -> None:
    source: Any = SourceFactory(enabled=False)
    response = client.get(f"/sourceConfig/?writeKey={source.write_key}")
    assert (response.status_code, response.json()["code"]) == (403, "source_disabled")
