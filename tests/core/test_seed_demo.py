"""`make run` a second time: the demo's secrets are the ones printed the first time, and work."""

import json
import stat
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from config.core.auth import api_token_create
from config.core.models import ApiToken
from profiles.models import Source
from profiles.services import source_rotate_key
from tests.conftest import IngestClient

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seeding_twice_keeps_the_keys_token_and_password_and_prints_them_again(demo_credentials: Path) -> None:
    first = seed()
    kept = json.loads(demo_credentials.read_text())

    second = seed()

    assert json.loads(demo_credentials.read_text()) == kept
    assert second.splitlines()[:10] == first.splitlines()[:10]
    assert kept["sources"]["demo-web"] in second
    assert kept["api_token"] in second
    assert kept["admin_password"] in second


def test_the_credentials_file_is_readable_by_its_owner_only(demo_credentials: Path) -> None:
    seed()

    assert stat.S_IMODE(demo_credentials.stat().st_mode) == 0o600


def test_the_kept_secrets_still_authenticate_after_a_second_seed(demo_credentials: Path, client: Client) -> None:
    seed()
    seed()
    kept = json.loads(demo_credentials.read_text())

    track = IngestClient(client, kept["sources"]["demo-web"]).post("track", {"userId": "u", "event": "Signed Up"})
    api = client.get("/api/v1/customers", {"user_id": "u"}, HTTP_AUTHORIZATION=f"Bearer {kept['api_token']}")
    admin = Client().login(username="admin", password=kept["admin_password"])

    assert (track.status_code, api.status_code, admin) == (200, 200, True)


def test_a_key_rotated_since_the_seed_is_left_as_it_is_and_not_printed(demo_credentials: Path) -> None:
    seed()
    rotated = source_rotate_key(source=Source.objects.get(name="demo-web"))

    out = seed()

    assert Source.objects.get(name="demo-web").write_key_prefix == rotated[:8]
    assert "demo-web" not in json.loads(demo_credentials.read_text())["sources"]
    assert "key rotated since it was seeded" in out


def test_an_admin_password_changed_since_the_seed_is_left_as_it_is(demo_credentials: Path) -> None:
    seed()
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("chosen-by-the-operator")
    admin.save()

    out = seed()

    assert Client().login(username="admin", password="chosen-by-the-operator")
    assert "password changed since it was seeded" in out


def test_a_revoked_demo_token_is_replaced_by_a_working_one(demo_credentials: Path, client: Client) -> None:
    seed()
    ApiToken.objects.filter(name="demo").update(revoked_at="2026-01-01T00:00:00Z")
    api_token_create(name="someone-else")

    seed()
    token = json.loads(demo_credentials.read_text())["api_token"]

    response = client.get("/api/v1/customers", {"user_id": "u"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404
    assert ApiToken.objects.filter(revoked_at=None).count() == 2


def test_a_source_seeded_before_the_file_existed_gets_a_key_that_is_then_kept(demo_credentials: Path) -> None:
    seed()
    demo_credentials.unlink()

    seed()
    kept: dict[str, Any] = json.loads(demo_credentials.read_text())
    seed()

    assert json.loads(demo_credentials.read_text()) == kept
    assert (len(kept["sources"]), Client().login(username="admin", password=kept["admin_password"])) == (7, True)
