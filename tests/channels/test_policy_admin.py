"""The contact policy is edited in the channels admin: one row, validated."""

from typing import Any

import orjson
import pytest

from channels.models import ContactPolicy

pytestmark = pytest.mark.django_db
URL = "/admin/channels/contactpolicy/add/"


def _form(caps: Any, **fields: str) -> dict[str, str]:
    return {
        "caps": orjson.dumps(caps).decode(),
        "quiet_start": "21:00",
        "quiet_end": "08:00",
        "fallback_timezone": "Europe/Paris",
        "high_priority_bypasses_caps": "on",
        **fields,
    }


def test_the_policy_is_created_in_the_admin(admin_client: Any) -> None:
    response = admin_client.post(URL, _form([{"purpose": "marketing", "max": 3, "window": {"days": 7}}]))

    assert response.status_code == 302
    policy = ContactPolicy.objects.get()
    assert (policy.id, policy.fallback_timezone, policy.caps[0]["max"]) == (1, "Europe/Paris", 3)


def test_a_bad_cap_is_shown_and_not_saved(admin_client: Any) -> None:
    response = admin_client.post(URL, _form([{"purpose": "marketing", "max": 3, "window": {"weeks": 1}}]))

    assert response.status_code == 200
    assert b"/caps/0/window" in response.content
    assert not ContactPolicy.objects.exists()


def test_an_unknown_zone_is_refused(admin_client: Any) -> None:
    response = admin_client.post(URL, _form([], fallback_timezone="Mars/Base"))

    assert (response.status_code, ContactPolicy.objects.exists()) == (200, False)


def test_there_is_only_one_policy(admin_client: Any) -> None:
    admin_client.post(URL, _form([]))

    assert admin_client.get(URL).status_code == 403
