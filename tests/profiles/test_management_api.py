"""/api/v1/customers: lookups, detail and the event history, behind Bearer tokens."""

from typing import Any

import pytest
from django.utils import timezone

from tests.factories import ApiTokenFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def known_customer(ingest: Any) -> str:
    ingest.post("page", {"anonymousId": "anon-1", "name": "Home"})
    ingest.post(
        "identify",
        {
            "anonymousId": "anon-1",
            "userId": "user-1",
            "traits": {"email": "Ann@Example.com", "phone": "+44 20 7946 0958"},
        },
    )
    return "user-1"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("user_id", "user-1"),
        ("anonymous_id", "anon-1"),
        ("email", "  ANN@example.COM"),
        ("phone", "+442079460958"),
    ],
)
def test_lookup_finds_the_customer_by_any_normalised_identity(
    api: Any, known_customer: str, kind: str, value: str
) -> None:
    response = api("/api/v1/customers", **{kind: value})
    assert response.status_code == 200, response.content
    assert {"kind": "user_id", "value": "user-1"} in response.json()["identities"]


def test_lookup_of_an_unknown_identity_is_404(api: Any) -> None:
    response = api("/api/v1/customers", user_id="nobody")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_lookup_needs_exactly_one_identity(api: Any) -> None:
    response = api("/api/v1/customers", user_id="a", email="b@example.com")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_lookup"


def test_detail_shows_traits_identities_and_merged_ids(api: Any, known_customer: str) -> None:
    customer_id = api("/api/v1/customers", user_id="user-1").json()["id"]
    body = api(f"/api/v1/customers/{customer_id}").json()
    assert body["traits"]["email"] == "Ann@Example.com"
    assert len(body["identities"]) == 4
    assert body["merged_ids"] == []


def test_unknown_customer_is_404(api: Any) -> None:
    assert api("/api/v1/customers/00000000-0000-0000-0000-000000000000").status_code == 404


def test_events_page_newest_first_with_stored_timestamps(api: Any, ingest: Any) -> None:
    for day in range(1, 6):
        ingest.post("track", {"userId": "u", "event": f"Day {day}", "timestamp": f"2026-11-0{day}T12:00:00Z"})
    customer_id = api("/api/v1/customers", user_id="u").json()["id"]
    first = api(f"/api/v1/customers/{customer_id}/events", page_size=3).json()
    second = api(first["next"].split("testserver")[1]).json()
    names = [e["name"] for e in first["results"] + second["results"]]
    assert names == ["Day 5", "Day 4", "Day 3", "Day 2", "Day 1"]
    assert first["results"][0]["timestamp"] == "2026-11-05T12:00:00Z"
    assert {"original_timestamp", "sent_at", "received_at"} <= set(first["results"][0])


def test_no_token_is_401(client: Any) -> None:
    response = client.get("/api/v1/customers", {"user_id": "u"})
    assert response.status_code == 401


def test_revoked_token_is_401(client: Any) -> None:
    token: Any = ApiTokenFactory(revoked_at=timezone.now())
    response = client.get("/api/v1/customers", {"user_id": "u"}, HTTP_AUTHORIZATION=f"Bearer {token.secret}")
    assert response.status_code == 401


def test_token_is_stored_only_as_a_hash(api_token: Any) -> None:
    assert api_token.secret not in (api_token.token_hash, api_token.prefix)
    assert len(api_token.token_hash) == 64
