"""Erase and export reach sessions: profiles calls what the sessions app registered."""

from typing import Any

import orjson
import pytest

from config.core.redis import Keys
from profiles.privacy.services import customer_erase, customer_export
from profiles.selectors import customer_find
from sessions.models import SessionRecord
from tests.conftest import SessionsClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def customer_id(source: Any, sessions_for: Any) -> Any:
    web: SessionsClient = sessions_for(source)
    session = web.start({"userId": "erase-me", "state": {"cart": [1]}}).json()
    assert web.handoff(session["id"]).status_code == 201
    customer = customer_find(kind="user_id", value="erase-me")
    assert customer is not None
    return customer.id


def test_erasing_a_customer_deletes_their_sessions(customer_id: Any) -> None:
    customer_erase(customer_id=customer_id, suppress=False, reason="", actor="test")
    assert not SessionRecord.objects.filter(customer_id=customer_id).exists()


def test_erasing_a_customer_deletes_their_session_copies_in_redis(customer_id: Any, test_redis: Any) -> None:
    session_ids = [str(i) for i in SessionRecord.objects.filter(customer_id=customer_id).values_list("id", flat=True)]
    keys = [Keys.session(i) for i in session_ids] + [Keys.session_index(str(customer_id))]
    customer_erase(customer_id=customer_id, suppress=False, reason="", actor="test")
    assert (len(session_ids), test_redis.exists(*keys)) == (1, 0)


def test_an_export_includes_the_customers_sessions(customer_id: Any) -> None:
    document = orjson.loads(b"".join(customer_export(customer_id=customer_id, actor="test")))
    assert [s["state"] for s in document["sessions"]] == [{"cart": [1]}]
