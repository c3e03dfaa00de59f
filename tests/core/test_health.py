from collections.abc import Iterator
from typing import Any

import pytest

from config.core import redis as tl_redis


@pytest.fixture
def fresh_redis_client() -> Iterator[None]:
    tl_redis.client.cache_clear()
    yield
    tl_redis.client.cache_clear()


def test_healthz_answers_while_the_process_lives(client: Any) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_checks_database_redis_and_broker(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_naming_the_failing_part(client: Any, settings: Any, fresh_redis_client: None) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]
