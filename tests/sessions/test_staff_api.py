"""/api/v1/sessions: staff read, end and revoke with a Bearer token; and the OpenAPI document."""

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from profiles.merging import customer_merge
from profiles.selectors import customer_find
from tests.conftest import SessionsClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(source: Any, sessions_for: Any) -> dict[str, Any]:
    web: SessionsClient = sessions_for(source)
    return dict(web.start({"userId": "u-1", "state": {"a": 1}}).json())


@pytest.fixture
def staff(client: Any, api_token: Any) -> Any:
    auth = f"Bearer {api_token.secret}"

    class Staff:
        def get(self, path: str, **params: Any) -> Any:
            return client.get(path, params, HTTP_AUTHORIZATION=auth)

        def post(self, path: str, body: Any = None) -> Any:
            return client.post(path, data=body or {}, content_type="application/json", HTTP_AUTHORIZATION=auth)

    return Staff()


def test_staff_read_a_session_with_its_customer(staff: Any, session: dict[str, Any]) -> None:
    body = staff.get(f"/api/v1/sessions/{session['id']}").json()
    assert (body["state"], body["userId"], len(body["sourceIds"])) == ({"a": 1}, "u-1", 1)


def test_staff_list_a_customers_active_sessions(staff: Any, session: dict[str, Any]) -> None:
    customer_id = staff.get(f"/api/v1/sessions/{session['id']}").json()["customerId"]
    body = staff.get("/api/v1/sessions", customer_id=customer_id, active="true").json()
    assert [s["id"] for s in body["sessions"]] == [session["id"]]


def test_staff_end_a_session(staff: Any, session: dict[str, Any]) -> None:
    body = staff.post(f"/api/v1/sessions/{session['id']}/end", {"outcome": "abandoned"}).json()
    assert (body["active"], body["outcome"]) == (False, "abandoned")


def test_staff_list_tokens_without_the_secret(
    staff: Any, source: Any, sessions_for: Any, session: dict[str, Any]
) -> None:
    secret = sessions_for(source).handoff(session["id"]).json()["token"]
    tokens = staff.get(f"/api/v1/sessions/{session['id']}/tokens").json()
    assert ([t["status"] for t in tokens], secret in str(tokens)) == (["valid"], False)


def test_staff_revoke_one_token(staff: Any, source: Any, sessions_for: Any, session: dict[str, Any]) -> None:
    sessions_for(source).handoff(session["id"])
    token_id = staff.get(f"/api/v1/sessions/{session['id']}/tokens").json()[0]["id"]
    assert staff.post(f"/api/v1/session-tokens/{token_id}/revoke").json()["status"] == "revoked"


def test_staff_api_needs_a_token(client: Any, session: dict[str, Any]) -> None:
    assert client.get(f"/api/v1/sessions/{session['id']}").status_code in (401, 403)


def test_an_unknown_session_is_404_for_staff(staff: Any) -> None:
    assert staff.get("/api/v1/sessions/00000000-0000-4000-8000-000000000000").status_code == 404


def test_a_bad_limit_is_400(staff: Any) -> None:
    assert staff.get("/api/v1/sessions", limit="lots").status_code == 400


def test_every_session_operation_is_in_the_schema() -> None:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert {
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/end",
        "/v1/sessions/{session_id}/handoff",
        "/v1/sessions/resume",
        "/v1/customers/sessions",
        "/api/v1/sessions",
        "/api/v1/sessions/kpis",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/end",
        "/api/v1/sessions/{session_id}/tokens",
        "/api/v1/sessions/{session_id}/tokens/revoke",
        "/api/v1/session-tokens/{token_id}/revoke",
    } <= set(paths)


def test_staff_list_by_any_id_of_a_merged_customer_has_every_session(
    staff: Any, client: Any, sessions_for: Any, session: dict[str, Any]
) -> None:
    kiosk: Any = SourceFactory.create(channel="pos")
    other = sessions_for(kiosk).start({"anonymousId": "kiosk-visitor"}).json()
    first = customer_find(kind="user_id", value="u-1")
    second = customer_find(kind="anonymous_id", value="kiosk-visitor")
    assert first is not None and second is not None
    customer_merge(customer_ids=[first.id, second.id], reason="same person", actor="test")
    for customer_id in (first.id, second.id):
        body = staff.get("/api/v1/sessions", customer_id=str(customer_id)).json()
        assert {s["id"] for s in body["sessions"]} == {session["id"], other["id"]}
