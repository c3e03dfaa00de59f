"""Every error under /v1 and /api/v1 is JSON in the one shape, 404s and 405s included, in DEBUG
as in production; the admin keeps Django's pages."""

from typing import Any

import pytest
from django.test import Client

from tests.conftest import IngestClient

pytestmark = pytest.mark.django_db

DEBUG_AND_NOT = pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])


@pytest.fixture
def debug_client(settings: Any, debug: bool) -> Client:
    settings.DEBUG = debug
    return Client()


@DEBUG_AND_NOT
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/not-a-uuid",
        "/api/v1/no-such-endpoint",
        "/api/v1/",
        "/api/v1",
        "/v1/no-such-call",
        "/v1/sessions/not-a-uuid",
        "/v1",
    ],
)
def test_a_path_no_route_matches_is_a_json_404(debug_client: Client, path: str) -> None:
    response = debug_client.get(path)

    assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert response.json() == {"detail": f"no such endpoint: {path}", "code": "not_found"}


@DEBUG_AND_NOT
def test_any_method_on_an_unknown_path_is_a_json_404(debug_client: Client) -> None:
    response = debug_client.delete("/v1/no-such-call")

    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@DEBUG_AND_NOT
def test_a_method_a_source_endpoint_does_not_take_is_a_json_405(debug_client: Client, source: Any) -> None:
    response = debug_client.get("/v1/track", HTTP_AUTHORIZATION=IngestClient(debug_client, source.write_key).auth())

    assert (response.status_code, response["Content-Type"]) == (405, "application/json")
    assert response.json() == {"detail": 'Method "GET" not allowed.', "code": "method_not_allowed"}


@DEBUG_AND_NOT
def test_a_method_a_management_endpoint_does_not_take_is_a_json_405(debug_client: Client, api_token: Any) -> None:
    response = debug_client.delete("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {api_token.secret}")

    assert (response.status_code, response["Content-Type"]) == (405, "application/json")
    assert response.json() == {"detail": 'Method "DELETE" not allowed.', "code": "method_not_allowed"}


@DEBUG_AND_NOT
def test_outside_the_api_django_keeps_its_own_404_page(debug_client: Client) -> None:
    response = debug_client.get("/admin-not-here/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
