"""The two session KPIs: context retention and cross-channel completion rate."""

from typing import Any

import pytest

from tests.conftest import IngestClient, SessionsClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def channels(client: Any, source: Any, sessions_for: Any) -> tuple[SessionsClient, SessionsClient]:
    kiosk_source = SourceFactory(channel="pos")
    return sessions_for(source), sessions_for(kiosk_source)


def _hand_off(web: SessionsClient, kiosk: SessionsClient, user_id: str) -> str:
    session = web.start({"userId": user_id, "state": {"cart": [1]}}).json()
    token = web.handoff(session["id"]).json()["token"]
    assert kiosk.resume({"token": token}).status_code == 200
    return str(session["id"])


def _start_over(web: SessionsClient, kiosk: SessionsClient, user_id: str) -> None:
    web.start({"userId": user_id})
    IngestClient(kiosk.client, kiosk.write_key).post("identify", {"userId": user_id})
    assert kiosk.start({"userId": user_id}).status_code == 201


def _kpis(client: Any, api_token: Any) -> dict[str, Any]:
    response = client.get("/api/v1/sessions/kpis", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}")
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_context_retention_is_the_share_of_continuations_that_resumed(
    client: Any, api_token: Any, channels: tuple[SessionsClient, SessionsClient]
) -> None:
    web, kiosk = channels
    for i in range(3):
        _hand_off(web, kiosk, f"resumer-{i}")
    _start_over(web, kiosk, "restarter")
    assert _kpis(client, api_token)["contextRetention"] == {"rate": 0.75, "resumed": 3, "startedOver": 1}


def test_cross_channel_completion_is_the_share_of_continued_sessions_completed_elsewhere(
    client: Any, api_token: Any, channels: tuple[SessionsClient, SessionsClient]
) -> None:
    web, kiosk = channels
    completed = _hand_off(web, kiosk, "buyer")
    _hand_off(web, kiosk, "browser")
    kiosk.end(completed, {"outcome": "completed"})
    assert _kpis(client, api_token)["crossChannelCompletion"] == {"rate": 0.5, "continued": 2, "completedElsewhere": 1}


def test_with_no_continuations_the_rates_are_null(client: Any, api_token: Any) -> None:
    kpis = _kpis(client, api_token)
    assert (kpis["contextRetention"]["rate"], kpis["crossChannelCompletion"]["rate"]) == (None, None)


def test_kpis_need_a_staff_token(client: Any) -> None:
    assert client.get("/api/v1/sessions/kpis").status_code in (401, 403)


def test_the_admin_shows_the_kpis(admin_client: Any, channels: tuple[SessionsClient, SessionsClient]) -> None:
    web, kiosk = channels
    _hand_off(web, kiosk, "u-1")
    response = admin_client.get("/admin/cxsessions/sessionrecord/")
    assert b"Context retention: 100.0%" in response.content
