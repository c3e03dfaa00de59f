from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from config.core.models import ApiToken
from profiles.models import Source
from tests.conftest import IngestClient

pytestmark = pytest.mark.django_db


def _last_line(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_create_source_prints_a_working_write_key_last(client: Any) -> None:
    key = _last_line("create_source", "kiosk", "--channel", "pos")
    response = IngestClient(client, key).post("track", {"userId": "u", "event": "Order Completed"})
    assert response.status_code == 200
    assert key not in Source.objects.get(name="kiosk").write_key_hash


def test_create_api_token_prints_a_working_token_last(client: Any) -> None:
    token = _last_line("create_api_token", "support")
    response = client.get("/api/v1/customers", {"user_id": "nobody"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404
    assert ApiToken.objects.get(name="support").token_hash != token


def test_seed_demo_registers_one_source_per_channel_and_prints_their_keys(demo_credentials: Any) -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert Source.objects.count() == 7
    assert out.getvalue().count("tlw_") == 7
