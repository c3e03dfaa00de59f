"""`/` tells whoever opens the server's address where everything is."""

import re
from typing import Any

import pytest
from django.test import Client

from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

WHERE_THINGS_ARE = ["/admin/", "/admin/operations/", "/api/docs/", "/api/schema/", "/healthz", "/readyz", "/metrics"]


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_the_home_page_links_to_where_things_are(settings: Any, debug: bool) -> None:
    settings.DEBUG = debug
    response = Client().get("/")

    assert (response.status_code, response["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert set(WHERE_THINGS_ARE) <= set(re.findall(r'href="([^"]+)"', response.content.decode()))


def test_the_home_page_names_the_demo_sources_and_where_their_keys_are(client: Client, settings: Any) -> None:
    settings.DEMO_CREDENTIALS_FILE = str(settings.BASE_DIR / "var" / "demo-credentials.json")
    web: Any = SourceFactory(name="demo-web", channel="web")
    mobile: Any = SourceFactory(name="demo-mobile", channel="mobile")
    SourceFactory(name="checkout", channel="web")

    page = client.get("/").content.decode()

    assert re.findall(r"<th scope=\"row\"><code>([\w-]+)</code>", page) == ["demo-mobile", "demo-web"]
    assert "var/demo-credentials.json" in page
    assert web.write_key not in page and mobile.write_key not in page


def test_without_demo_sources_the_home_page_says_how_to_make_them(client: Client) -> None:
    page = client.get("/").content.decode()

    assert "No demo sources here" in page


def test_a_credentials_file_outside_the_checkout_is_not_named(client: Client, demo_credentials: Any) -> None:
    SourceFactory(name="demo-web")

    page = client.get("/").content.decode()

    assert ("printed when <code>make run</code> starts.</p>" in page, str(demo_credentials) in page) == (True, False)


def test_the_home_page_takes_only_reads(client: Client) -> None:
    assert client.post("/").status_code == 405
