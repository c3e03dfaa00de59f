"""Two channels writing at once: one wins, the other gets 412 with the current version, and
after it reads again and retries, both updates are there. Real threads, real connections."""

import threading
from typing import Any

import pytest
from django.db import connection

from tests.conftest import FastPathClient, SessionsClient

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 10


def _race(clients: list[SessionsClient], session_id: str, patches: list[dict[str, Any]], version: int) -> list[Any]:
    barrier = threading.Barrier(len(clients))
    responses: list[Any] = [None] * len(clients)

    def write(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            responses[index] = clients[index].patch(session_id, patches[index], version=version)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


@pytest.fixture
def two_channels(source: Any) -> tuple[SessionsClient, SessionsClient]:
    return SessionsClient(FastPathClient(), source.write_key), SessionsClient(FastPathClient(), source.write_key)


def test_concurrent_conflicting_patches_one_wins_one_412_nothing_lost(
    two_channels: tuple[SessionsClient, SessionsClient],
) -> None:
    web, app = two_channels
    session = web.start({"userId": "u-1", "state": {}}).json()
    version = 1
    for round_ in range(ROUNDS):
        responses = _race([web, app], session["id"], [{f"web-{round_}": 1}, {f"app-{round_}": 1}], version)
        assert sorted(r.status_code for r in responses) == [200, 412]
        loser = next(i for i, r in enumerate(responses) if r.status_code == 412)
        current = responses[loser].json()["currentVersion"]
        retried = [web, app][loser].patch(
            session["id"], [{f"web-{round_}": 1}, {f"app-{round_}": 1}][loser], version=current
        )
        assert retried.status_code == 200
        version = retried.json()["version"]
    state = web.get(session["id"]).json()["state"]
    assert state == {f"{who}-{r}": 1 for r in range(ROUNDS) for who in ("web", "app")}
