"""Sessions on the customer timeline: the sessions app's records, registered with
profiles.contracts.on_timeline, over the live profile and every profile merged into it."""

from typing import Any

import pytest

from profiles.merging import customer_merge
from profiles.selectors import customer_find
from tests.conftest import IngestClient, SessionsClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _timeline(api: Any, customer_id: Any, **params: Any) -> list[dict[str, Any]]:
    response = api(f"/api/v1/customers/{customer_id}/timeline", kinds="session_started,session_ended", **params)
    assert response.status_code == 200, response.content
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def test_a_session_started_and_ended_through_the_api_is_on_the_timeline(
    api: Any, source: Any, sessions_for: Any
) -> None:
    web: SessionsClient = sessions_for(source)
    session = web.start({"userId": "u-1", "device": "laptop"}).json()
    web.end(session["id"], {"outcome": "completed"})
    customer = customer_find(kind="user_id", value="u-1")
    assert customer is not None
    entries = _timeline(api, customer.id)
    assert [(e["kind"], e["id"], e["channel"]) for e in entries] == [
        ("session_ended", session["id"], "web"),
        ("session_started", session["id"], "web"),
    ]
    assert (entries[0]["data"]["outcome"], entries[1]["data"]["device"]) == ("completed", "laptop")


def test_the_session_of_a_profile_merged_away_is_on_the_survivors_timeline(
    api: Any, client: Any, source: Any, sessions_for: Any
) -> None:
    kiosk: Any = SourceFactory.create(channel="pos")
    IngestClient(client, kiosk.write_key).post("identify", {"userId": "u-2"})
    session = sessions_for(source).start({"anonymousId": "web-visitor"}).json()
    older = customer_find(kind="user_id", value="u-2")
    newer = customer_find(kind="anonymous_id", value="web-visitor")
    assert older is not None and newer is not None
    customer_merge(customer_ids=[older.id, newer.id], reason="same person", actor="test")
    assert [(e["kind"], e["id"]) for e in _timeline(api, older.id)] == [("session_started", session["id"])]
    assert [(e["kind"], e["id"]) for e in _timeline(api, newer.id)] == [("session_started", session["id"])]


def test_session_entries_page_through_the_cursor_without_loss_or_repeat(
    api: Any, client: Any, source: Any, sessions_for: Any
) -> None:
    started = []
    for channel in ("web", "pos", "chat", "mobile"):
        channel_source: Any = source if channel == "web" else SourceFactory.create(channel=channel)
        IngestClient(client, channel_source.write_key).post("identify", {"userId": "u-3"})
        started.append(sessions_for(channel_source).start({"userId": "u-3"}).json()["id"])
    customer = customer_find(kind="user_id", value="u-3")
    assert customer is not None
    seen: list[str] = []
    body = api(f"/api/v1/customers/{customer.id}/timeline", kinds="session_started", page_size=3).json()
    seen += [e["id"] for e in body["results"]]
    while body["next_cursor"]:
        body = api(
            f"/api/v1/customers/{customer.id}/timeline",
            kinds="session_started",
            page_size=3,
            cursor=body["next_cursor"],
        ).json()
        seen += [e["id"] for e in body["results"]]
    assert sorted(seen) == sorted(started)
