"""/api/docs/ works without internet: Swagger UI's files come from this server."""

import re
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def static_client(settings: Any) -> Client:
    """A client whose whitenoise serves the apps' static files where they are (as `make run`
    serves them after collectstatic); a new Client builds its middleware with these settings."""
    settings.WHITENOISE_USE_FINDERS = True
    return Client()


def test_the_docs_page_names_no_other_host(client: Client) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert re.findall(r"\b(?:https?:)?//[\w.-]+", response.content.decode()) == []


def test_every_asset_of_the_docs_page_is_served_here(static_client: Client) -> None:
    page = static_client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    served = {url: static_client.get(url) for url in assets}

    assert len(assets) >= 3
    assert {url: response.status_code for url, response in served.items()} == dict.fromkeys(assets, 200)
    assert all(response.getvalue() for response in served.values())
