"""Handoff and resume across channels: tokens (single use, expiring, revocable) and identities."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from profiles.merging import customer_merge
from profiles.models import Event
from profiles.selectors import customer_find
from sessions.models import ContinuationKind, ResumeToken, SessionContinuation
from tests.conftest import IngestClient, SessionsClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(source: Any, sessions_for: Any) -> SessionsClient:
    return sessions_for(source)


@pytest.fixture
def kiosk_source() -> Any:
    return SourceFactory(channel="pos")


@pytest.fixture
def kiosk(kiosk_source: Any, sessions_for: Any) -> SessionsClient:
    return sessions_for(kiosk_source)


@pytest.fixture
def cart(web: SessionsClient) -> dict[str, Any]:
    response = web.start({"userId": "u-1", "device": "laptop", "state": {"cart": [{"sku": "A1", "qty": 2}]}})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def token(web: SessionsClient, cart: dict[str, Any]) -> str:
    response = web.handoff(cart["id"])
    assert response.status_code == 201, response.content
    return str(response.json()["token"])


def test_handoff_returns_a_token_and_a_resume_url(web: SessionsClient, cart: dict[str, Any]) -> None:
    body = web.handoff(cart["id"]).json()
    assert body["token"].startswith("tlr_") and body["token"] in body["resumeUrl"]


def test_the_token_is_stored_only_as_a_hash(token: str) -> None:
    assert not ResumeToken.objects.filter(token_hash=token).exists() and ResumeToken.objects.count() == 1


def test_resume_with_the_token_returns_the_state_on_the_new_channel(
    kiosk: SessionsClient, cart: dict[str, Any], token: str
) -> None:
    body = kiosk.resume({"token": token, "device": "kiosk-7"}).json()
    assert (body["id"], body["state"], body["channel"], body["device"], body["channels"]) == (
        cart["id"],
        cart["state"],
        "pos",
        "kiosk-7",
        ["web", "pos"],
    )


def test_resume_bumps_the_version(kiosk: SessionsClient, cart: dict[str, Any], token: str) -> None:
    response = kiosk.resume({"token": token})
    assert (response.json()["version"], response["ETag"]) == (2, '"2"')


def test_resume_ingests_a_session_resumed_event_from_the_new_channel(
    kiosk: SessionsClient, kiosk_source: Any, cart: dict[str, Any], token: str
) -> None:
    kiosk.resume({"token": token})
    event = Event.objects.get(name="Session Resumed")
    assert (event.source_id, event.properties["fromChannel"], event.properties["toChannel"]) == (
        kiosk_source.id,
        "web",
        "pos",
    )


def test_the_resuming_channel_can_then_patch_the_session(
    kiosk: SessionsClient, cart: dict[str, Any], token: str
) -> None:
    kiosk.resume({"token": token})
    assert kiosk.patch(cart["id"], {"paid": True}, version=2).status_code == 200


def test_the_first_channel_sees_the_other_channels_writes(
    web: SessionsClient, kiosk: SessionsClient, cart: dict[str, Any], token: str
) -> None:
    kiosk.resume({"token": token})
    kiosk.patch(cart["id"], {"paid": True}, version=2)
    assert web.get(cart["id"]).json()["state"] == {"cart": [{"sku": "A1", "qty": 2}], "paid": True}


def test_a_token_works_once(kiosk: SessionsClient, token: str) -> None:
    kiosk.resume({"token": token})
    response = kiosk.resume({"token": token})
    assert (response.status_code, response.json()["code"]) == (410, "token_used")


def test_a_used_token_reveals_no_state(kiosk: SessionsClient, token: str) -> None:
    kiosk.resume({"token": token})
    assert "state" not in kiosk.resume({"token": token}).json()


def test_an_expired_token_is_410(kiosk: SessionsClient, token: str) -> None:
    ResumeToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = kiosk.resume({"token": token})
    assert (response.status_code, response.json()["code"]) == (410, "token_expired")


def test_handoff_honours_the_requested_ttl(web: SessionsClient, cart: dict[str, Any]) -> None:
    web.handoff(cart["id"], {"ttlSeconds": 1})
    row = ResumeToken.objects.get()
    assert (row.expires_at - row.created_at) == timedelta(seconds=1)


def test_a_ttl_over_the_maximum_is_400(web: SessionsClient, cart: dict[str, Any]) -> None:
    assert web.handoff(cart["id"], {"ttlSeconds": 86_400}).status_code == 400


def test_an_unknown_token_is_404(kiosk: SessionsClient, token: str) -> None:
    response = kiosk.resume({"token": token[:-2] + "xx"})
    assert (response.status_code, response.json()["code"]) == (404, "token_not_found")


def test_a_token_revoked_by_staff_is_410(
    client: Any, api_token: Any, kiosk: SessionsClient, cart: dict[str, Any], token: str
) -> None:
    revoked = client.post(
        f"/api/v1/sessions/{cart['id']}/tokens/revoke", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}"
    )
    response = kiosk.resume({"token": token})
    assert (revoked.json(), response.status_code, response.json()["code"]) == ({"revoked": 1}, 410, "token_revoked")


def test_handoff_by_another_source_is_404(kiosk: SessionsClient, cart: dict[str, Any]) -> None:
    assert kiosk.handoff(cart["id"]).status_code == 404


def test_handoff_of_an_ended_session_is_409(web: SessionsClient, cart: dict[str, Any]) -> None:
    web.end(cart["id"])
    assert web.handoff(cart["id"]).status_code == 409


def test_a_token_for_a_session_that_was_completed_is_410(
    web: SessionsClient, kiosk: SessionsClient, cart: dict[str, Any], token: str
) -> None:
    web.end(cart["id"], {"outcome": "completed"})
    response = kiosk.resume({"token": token})
    assert (response.status_code, response.json()["code"]) == (410, "session_ended")


def test_resume_needs_exactly_one_of_token_and_identity(kiosk: SessionsClient, token: str) -> None:
    assert kiosk.resume({"token": token, "userId": "u-1"}).status_code == 400


def test_resume_by_an_identity_the_source_identified(
    client: Any, kiosk_source: Any, kiosk: SessionsClient, cart: dict[str, Any]
) -> None:
    IngestClient(client, kiosk_source.write_key).post("identify", {"userId": "u-1"})
    body = kiosk.resume({"userId": "u-1", "device": "kiosk-1"}).json()
    assert (body["id"], body["state"], body["channel"], body["resumedVia"]) == (
        cart["id"],
        cart["state"],
        "pos",
        "identity",
    )


def test_resume_by_an_identity_the_source_never_identified_is_404(kiosk: SessionsClient, cart: dict[str, Any]) -> None:
    response = kiosk.resume({"userId": "u-1"})
    assert (response.status_code, "state" in response.json()) == (404, False)


def test_resuming_through_a_token_gives_no_access_to_the_customers_other_sessions(
    client: Any, kiosk: SessionsClient, token: str, sessions_for: Any
) -> None:
    chat = sessions_for(SourceFactory(channel="chat"))
    IngestClient(client, chat.write_key).post("identify", {"userId": "u-1"})
    other = chat.start({"userId": "u-1"}).json()
    kiosk.resume({"token": token})
    assert kiosk.get(other["id"]).status_code == 404


def test_a_resume_is_recorded_as_a_continuation(kiosk: SessionsClient, cart: dict[str, Any], token: str) -> None:
    kiosk.resume({"token": token})
    row = SessionContinuation.objects.get()
    assert (row.kind, row.from_channel, row.to_channel, row.via) == (ContinuationKind.RESUMED, "web", "pos", "token")


def test_resume_ends_the_customers_other_session_on_that_channel(
    client: Any, kiosk_source: Any, kiosk: SessionsClient, token: str
) -> None:
    IngestClient(client, kiosk_source.write_key).post("identify", {"userId": "u-1"})
    stale = kiosk.start({"userId": "u-1"}).json()
    kiosk.resume({"token": token})
    assert kiosk.get(stale["id"]).json()["endReason"] == "superseded"


def test_a_session_of_a_profile_merged_away_is_still_found_by_identity(
    client: Any, kiosk_source: Any, kiosk: SessionsClient, web: SessionsClient
) -> None:
    IngestClient(client, kiosk_source.write_key).post("identify", {"anonymousId": "kiosk-visitor"})
    session = web.start({"anonymousId": "web-visitor", "state": {"cart": [1]}}).json()
    older = customer_find(kind="anonymous_id", value="kiosk-visitor")
    newer = customer_find(kind="anonymous_id", value="web-visitor")
    assert older is not None and newer is not None
    customer_merge(customer_ids=[older.id, newer.id], reason="same person", actor="test")
    listed = kiosk.customer_sessions(anonymous_id="kiosk-visitor", active="true").json()["sessions"]
    assert [s["id"] for s in listed] == [session["id"]]


def test_resuming_a_session_of_a_profile_merged_away_supersedes_the_survivors_session_on_that_channel(
    client: Any, kiosk_source: Any, kiosk: SessionsClient, web: SessionsClient
) -> None:
    IngestClient(client, kiosk_source.write_key).post("identify", {"anonymousId": "kiosk-visitor"})
    at_kiosk = kiosk.start({"anonymousId": "kiosk-visitor"}).json()
    on_web = web.start({"anonymousId": "web-visitor", "state": {"cart": [1]}}).json()
    older = customer_find(kind="anonymous_id", value="kiosk-visitor")
    newer = customer_find(kind="anonymous_id", value="web-visitor")
    assert older is not None and newer is not None
    customer_merge(customer_ids=[older.id, newer.id], reason="same person", actor="test")
    resumed = kiosk.resume({"anonymousId": "kiosk-visitor"})
    assert (resumed.status_code, resumed.json()["id"], resumed.json()["state"]) == (200, on_web["id"], {"cart": [1]})
    assert kiosk.get(at_kiosk["id"]).json()["endReason"] == "superseded"


def test_starting_a_session_after_a_merge_returns_the_one_begun_on_the_profile_merged_away(
    client: Any, kiosk_source: Any, web: SessionsClient
) -> None:
    IngestClient(client, kiosk_source.write_key).post("identify", {"userId": "u-9"})
    on_web = web.start({"anonymousId": "web-visitor"}).json()
    older = customer_find(kind="user_id", value="u-9")
    newer = customer_find(kind="anonymous_id", value="web-visitor")
    assert older is not None and newer is not None
    customer_merge(customer_ids=[older.id, newer.id], reason="same person", actor="test")
    again = web.start({"userId": "u-9"})
    assert (again.status_code, again.json()["id"]) == (200, on_web["id"])
