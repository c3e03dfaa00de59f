"""/v1/sessions: start, read, patch, end, as a channel calls them, against real Redis and PostgreSQL."""

from typing import Any

import pytest
from django.test import override_settings

from profiles.models import Event
from sessions.models import SessionRecord
from tests.conftest import IngestClient, SessionsClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(source: Any, sessions_for: Any) -> SessionsClient:
    return sessions_for(source)


@pytest.fixture
def started(web: SessionsClient) -> dict[str, Any]:
    response = web.start({"userId": "u-1", "device": "laptop", "state": {"form": {"step": 1, "email": "a@b.c"}}})
    assert response.status_code == 201, response.content
    return response.json()


def test_start_returns_the_new_session_with_its_version_as_etag(web: SessionsClient) -> None:
    response = web.start({"userId": "u-1", "state": {"cart": ["A1"]}})
    body = response.json()
    assert (response.status_code, response["ETag"], body["version"], body["state"]) == (201, '"1"', 1, {"cart": ["A1"]})


def test_start_ingests_a_session_started_event(started: dict[str, Any]) -> None:
    event = Event.objects.get(name="Session Started")
    assert (event.user_id, event.properties["sessionId"]) == ("u-1", started["id"])


def test_starting_again_on_the_same_channel_returns_the_active_session(
    web: SessionsClient, started: dict[str, Any]
) -> None:
    response = web.start({"userId": "u-1"})
    assert (response.status_code, response.json()["id"]) == (200, started["id"])


def test_start_without_an_identity_is_400(web: SessionsClient) -> None:
    response = web.start({"device": "x"})
    assert (response.status_code, response.json()["code"]) == (400, "missing_identity")


def test_start_with_state_that_is_not_an_object_is_400(web: SessionsClient) -> None:
    response = web.start({"userId": "u-1", "state": [1, 2]})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_state")


@override_settings(SESSIONS_MAX_STATE_BYTES=100, SESSIONS_MAX_BODY_BYTES=10_000)
def test_start_with_state_over_the_size_limit_is_413(web: SessionsClient) -> None:
    response = web.start({"userId": "u-1", "state": {"notes": "x" * 200}})
    assert (response.status_code, response.json()["code"]) == (413, "state_too_large")


def test_malformed_json_is_400(web: SessionsClient) -> None:
    response = web.client.post(
        "/v1/sessions", data=b"{nope", content_type="application/json", HTTP_AUTHORIZATION=web.auth
    )
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")


def test_a_body_over_the_limit_is_413_before_it_is_read(web: SessionsClient) -> None:
    response = web.start({"userId": "u-1", "state": {"blob": "x" * 100_000}})
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")


def test_form_encoded_bodies_are_415(web: SessionsClient) -> None:
    response = web.client.post(
        "/v1/sessions", data=b"userId=u", content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=web.auth
    )
    assert response.status_code == 415


def test_no_write_key_is_401(client: Any) -> None:
    assert client.post("/v1/sessions", data=b"{}", content_type="application/json").status_code == 401


def test_an_unknown_write_key_is_401(client: Any, sessions_for: Any) -> None:
    stranger = SessionsClient(client, "tlw_unknown")
    assert stranger.start({"userId": "u-1"}).status_code == 401


def test_get_returns_the_state_and_etag(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.get(started["id"])
    assert (response.status_code, response["ETag"], response.json()) == (200, '"1"', started)


def test_get_with_the_current_etag_in_if_none_match_is_304(web: SessionsClient, started: dict[str, Any]) -> None:
    assert web.get(started["id"], HTTP_IF_NONE_MATCH='"1"').status_code == 304


def test_get_of_an_unknown_session_is_404(web: SessionsClient) -> None:
    response = web.get("00000000-0000-4000-8000-000000000000")
    assert (response.status_code, response.json()["code"]) == (404, "session_not_found")


def test_patch_merges_and_bumps_the_version(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.patch(started["id"], {"form": {"step": 2, "email": None}, "cart": ["A1"]}, version=1)
    assert (response.status_code, response["ETag"]) == (200, '"2"')
    assert web.get(started["id"]).json()["state"] == {"form": {"step": 2}, "cart": ["A1"]}


def test_patch_without_if_match_is_428(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.patch(started["id"], {"a": 1}, version=None)
    assert (response.status_code, response.json()["code"]) == (428, "if_match_required")


def test_patch_with_a_stale_version_is_412_with_the_current_version(
    web: SessionsClient, started: dict[str, Any]
) -> None:
    web.patch(started["id"], {"a": 1}, version=1)
    response = web.patch(started["id"], {"b": 2}, version=1)
    assert (response.status_code, response.json()["code"], response.json()["currentVersion"]) == (
        412,
        "version_mismatch",
        2,
    )


def test_a_refused_patch_writes_nothing(web: SessionsClient, started: dict[str, Any]) -> None:
    web.patch(started["id"], {"b": 2}, version=7)
    assert web.get(started["id"]).json() == started


def test_patch_with_if_match_star_writes_whatever_the_version(web: SessionsClient, started: dict[str, Any]) -> None:
    web.patch(started["id"], {"a": 1}, version=1)
    assert web.patch(started["id"], {"b": 2}, version="*").json()["version"] == 3


def test_patch_with_a_junk_if_match_is_400(web: SessionsClient, started: dict[str, Any]) -> None:
    assert web.patch(started["id"], {"b": 2}, version="v1").status_code == 400


def test_a_patch_that_is_not_an_object_is_400(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.patch(started["id"], ["replace", "everything"], version=1)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_patch")


@override_settings(SESSIONS_MAX_STATE_BYTES=300)
def test_a_patch_making_the_state_too_large_is_413_and_writes_nothing(
    web: SessionsClient, started: dict[str, Any]
) -> None:
    response = web.patch(started["id"], {"notes": "x" * 400}, version=1)
    assert (response.status_code, web.get(started["id"]).json()["version"]) == (413, 1)


def test_a_deeply_nested_patch_is_400(web: SessionsClient, started: dict[str, Any]) -> None:
    deep: Any = 1
    for _ in range(200):
        deep = {"a": deep}
    assert web.patch(started["id"], deep, version=1).status_code == 400


def test_a_nul_character_in_the_state_is_400(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.patch(started["id"], {"note": "a\u0000b"}, version=1)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_patch")


def test_end_ends_the_session_with_its_outcome(web: SessionsClient, started: dict[str, Any]) -> None:
    body = web.end(started["id"], {"outcome": "completed"}).json()
    assert (body["active"], body["endReason"], body["outcome"]) == (False, "ended", "completed")


def test_end_ingests_a_session_ended_event(web: SessionsClient, started: dict[str, Any]) -> None:
    web.end(started["id"])
    assert Event.objects.get(name="Session Ended").properties["sessionId"] == started["id"]


def test_ending_twice_changes_nothing(web: SessionsClient, started: dict[str, Any]) -> None:
    first = web.end(started["id"]).json()
    assert (web.end(started["id"]).json(), Event.objects.filter(name="Session Ended").count()) == (first, 1)


def test_patching_an_ended_session_is_409(web: SessionsClient, started: dict[str, Any]) -> None:
    web.end(started["id"])
    assert web.patch(started["id"], {"a": 1}, version="*").status_code == 409


def test_an_unknown_outcome_is_400(web: SessionsClient, started: dict[str, Any]) -> None:
    assert web.end(started["id"], {"outcome": "maybe"}).status_code == 400


def test_another_source_cannot_read_the_session(started: dict[str, Any], sessions_for: Any) -> None:
    other = sessions_for(SourceFactory(channel="mobile"))
    response = other.get(started["id"])
    assert (response.status_code, response.json()["code"]) == (404, "session_not_found")


def test_another_source_cannot_patch_the_session(started: dict[str, Any], sessions_for: Any) -> None:
    other = sessions_for(SourceFactory(channel="mobile"))
    response = other.patch(started["id"], {"hijack": True}, version=1)
    assert (response.status_code, SessionRecord.objects.get(id=started["id"]).state) == (404, started["state"])


def test_another_source_cannot_end_the_session(started: dict[str, Any], sessions_for: Any) -> None:
    other = sessions_for(SourceFactory(channel="mobile"))
    assert other.end(started["id"]).status_code == 404


def test_a_source_that_identified_the_customer_reads_the_session(
    started: dict[str, Any], sessions_for: Any, client: Any
) -> None:
    kiosk_source: Any = SourceFactory(channel="pos")
    IngestClient(client, kiosk_source.write_key).post("identify", {"userId": "u-1"})
    assert sessions_for(kiosk_source).get(started["id"]).status_code == 200


def test_customer_sessions_lists_the_active_sessions(web: SessionsClient, started: dict[str, Any]) -> None:
    response = web.customer_sessions(user_id="u-1", active="true")
    assert [s["id"] for s in response.json()["sessions"]] == [started["id"]]


def test_customer_sessions_for_an_identity_the_source_never_identified_is_404(
    started: dict[str, Any], sessions_for: Any
) -> None:
    other = sessions_for(SourceFactory(channel="pos"))
    assert other.customer_sessions(user_id="u-1").status_code == 404


def test_customer_sessions_with_a_nul_in_the_identity_is_400(web: SessionsClient) -> None:
    assert web.customer_sessions(user_id="u\x00").status_code == 400


def test_customer_sessions_needs_exactly_one_identity(web: SessionsClient) -> None:
    assert web.customer_sessions(user_id="u-1", anonymous_id="a-1").status_code == 400


@override_settings(SESSIONS_RATE_LIMIT_PER_SECOND=3)
def test_reads_over_the_source_rate_limit_are_429(web: SessionsClient, started: dict[str, Any]) -> None:
    statuses = [web.get(started["id"]).status_code for _ in range(10)]
    assert 429 in statuses
