"""After a Redis partition a read never returns a version older than an acknowledged write.

During a partition a write commits to PostgreSQL but can neither refresh nor drop the Redis
copy, which survives the partition. These tests put a throwaway Redis (never the shared one)
behind two TCP links, one per web server process, cut them, write through one process while
they are cut, heal them, and read through the process that saw the failure and through the
other. One test cuts only the writer's link: the other process reads Redis all along.
"""

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sessions.models import SessionRecord, StaleCopy
from tests.conftest import SessionsClient, web_server
from tests.throwaway import TcpLink, ThrowawayRedis, throwaway_redis

pytestmark = pytest.mark.django_db(transaction=True)

READS = 5


class Channel:
    """A source calling /v1/sessions on one web server over HTTP."""

    def __init__(self, base: str, write_key: str):
        self.base = base
        self.auth = (write_key, "")

    def start(self, body: Any) -> Any:
        return requests.post(f"{self.base}/v1/sessions", json=body, auth=self.auth, timeout=10)

    def get(self, session_id: str) -> Any:
        return requests.get(f"{self.base}/v1/sessions/{session_id}", auth=self.auth, timeout=10)

    def patch(self, session_id: str, body: Any, *, etag: str) -> Any:
        headers = {"If-Match": etag, "Content-Type": "application/merge-patch+json"}
        return requests.patch(
            f"{self.base}/v1/sessions/{session_id}", json=body, auth=self.auth, headers=headers, timeout=10
        )

    def end(self, session_id: str) -> Any:
        body = {"outcome": "completed"}
        return requests.post(f"{self.base}/v1/sessions/{session_id}/end", json=body, auth=self.auth, timeout=10)

    def active_sessions(self, user_id: str) -> list[str]:
        params = {"user_id": user_id, "active": "true"}
        answer = requests.get(f"{self.base}/v1/customers/sessions", params=params, auth=self.auth, timeout=10)
        assert answer.status_code == 200, answer.text
        return [s["id"] for s in answer.json()["sessions"]]


class Partition:
    """A throwaway Redis reached by each of two web processes through a link of its own, which
    the test can cut (Redis keeps its copies) and heal."""

    def __init__(self, server: ThrowawayRedis):
        self.writer_link = TcpLink(server.port)
        self.other_link = TcpLink(server.port)

    def cut(self) -> None:
        self.writer_link.cut()
        self.other_link.cut()

    def heal(self) -> None:
        self.writer_link.heal()
        self.other_link.heal()


@pytest.fixture
def partition() -> Iterator[Partition]:
    with throwaway_redis() as server:
        links = Partition(server)
        try:
            yield links
        finally:
            links.cut()


@pytest.fixture
def channels(partition: Partition, source: Any) -> Iterator[tuple[Channel, Channel]]:
    """Two web server processes on the same database and Redis: the one that writes during the
    partition, and another that never sees a Redis failure of its own while writing."""
    writer_redis = f"redis://127.0.0.1:{partition.writer_link.port}/0"
    other_redis = f"redis://127.0.0.1:{partition.other_link.port}/0"
    with web_server(REDIS_URL=writer_redis) as (writer, _), web_server(REDIS_URL=other_redis) as (other, _):
        yield Channel(writer, source.write_key), Channel(other, source.write_key)


def _session_at_version_2(writer: Channel, other: Channel) -> str:
    """A session patched once, its version 2 copied to Redis and read there by both processes."""
    started = writer.start({"userId": "u-1", "state": {"step": 1}}).json()
    patched = writer.patch(started["id"], {"step": 2}, etag='"1"')
    assert patched.json()["version"] == 2
    assert [other.get(started["id"]).json()["version"], writer.get(started["id"]).json()["version"]] == [2, 2]
    return str(started["id"])


def test_every_read_after_a_partition_returns_the_write_acknowledged_during_it(
    partition: Partition, channels: tuple[Channel, Channel]
) -> None:
    writer, other = channels
    session_id = _session_at_version_2(writer, other)
    partition.cut()
    during = writer.patch(session_id, {"step": 3}, etag='"2"')
    partition.heal()

    read = [other.get(session_id).headers["ETag"] for _ in range(READS)]
    read += [writer.get(session_id).headers["ETag"] for _ in range(READS)]

    assert (during.status_code, read) == (200, ['"3"'] * 2 * READS)


def test_a_process_still_reaching_redis_serves_the_write_once_it_is_acknowledged(
    partition: Partition, channels: tuple[Channel, Channel]
) -> None:
    """Only the writer loses Redis: the other process keeps reading Redis, where the old copy
    is, and keeps its view of the stale copies as fresh as it can (a reader polls it meanwhile)."""
    writer, other = channels
    session_id = _session_at_version_2(writer, other)
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            other.get(session_id)

    poller = threading.Thread(target=poll)
    poller.start()
    partition.writer_link.cut()
    during = writer.patch(session_id, {"step": 3}, etag='"2"')

    read = [other.get(session_id).headers["ETag"] for _ in range(READS)]
    done.set()
    poller.join(timeout=10)

    assert (during.status_code, read) == (200, ['"3"'] * READS)


def test_the_retry_recipe_succeeds_first_time_after_a_partition(
    partition: Partition, channels: tuple[Channel, Channel]
) -> None:
    """A channel that last read version 2 patches with If-Match "2", gets 412, reads again and
    retries with the ETag it read, as docs/sessions.md says."""
    writer, other = channels
    session_id = _session_at_version_2(writer, other)
    partition.cut()
    writer.patch(session_id, {"step": 3}, etag='"2"')
    partition.heal()

    refused = other.patch(session_id, {"coupon": "X"}, etag='"2"')
    reread = other.get(session_id)
    retried = other.patch(session_id, {"coupon": "X"}, etag=reread.headers["ETag"])

    assert (refused.status_code, retried.status_code, retried.json().get("state")) == (
        412,
        200,
        {"step": 3, "coupon": "X"},
    )


def test_a_session_ended_during_a_partition_is_not_listed_as_active_after_it(
    partition: Partition, channels: tuple[Channel, Channel]
) -> None:
    writer, other = channels
    session_id = _session_at_version_2(writer, other)
    assert other.active_sessions("u-1") == [session_id]  # the customer's index is built in Redis
    partition.cut()
    ended = writer.end(session_id)
    partition.heal()

    assert (ended.status_code, other.active_sessions("u-1"), writer.active_sessions("u-1")) == (200, [], [])


def test_a_read_after_the_partition_settles_the_stale_copy(
    partition: Partition, channels: tuple[Channel, Channel]
) -> None:
    """The debt the write left is paid once Redis answers again: the copy is refreshed or gone,
    and the debt row is deleted."""
    writer, other = channels
    session_id = _session_at_version_2(writer, other)
    partition.cut()
    writer.patch(session_id, {"step": 3}, etag='"2"')
    debts = list(StaleCopy.objects.values_list("session_id", flat=True))
    partition.heal()

    other.get(session_id)

    assert ([str(d) for d in debts], StaleCopy.objects.count()) == ([session_id], 0)


def test_a_patch_that_finds_the_redis_copy_behind_the_database_refreshes_it(
    source: Any, sessions_for: Any, test_redis: Any
) -> None:
    """A copy older than PostgreSQL with no debt recorded (left by a version without debts, or
    a race): the PATCH that finds it out (its conditional UPDATE misses, the locked path sees a
    newer row) puts the current version in Redis, so the 412 is followed by a GET of it."""
    web: SessionsClient = sessions_for(source)
    session_id = web.start({"userId": "u-1", "state": {"step": 1}}).json()["id"]
    web.patch(session_id, {"step": 2}, version=1)
    key = f"tl:sess:{session_id}"
    old_copy = test_redis.dump(key)
    web.patch(session_id, {"step": 3}, version=2)
    test_redis.restore(key, 600_000, old_copy, replace=True)

    refused = web.patch(session_id, {"coupon": "X"}, version=2)
    reread = web.get(session_id)

    assert (refused.status_code, refused.json()["currentVersion"], reread["ETag"]) == (412, 3, '"3"')


def test_a_session_erased_during_a_partition_is_not_served_from_its_old_copy(
    partition: Partition, channels: tuple[Channel, Channel], api_token: Any
) -> None:
    """An erase deletes the rows and then the Redis copies; during a partition the copies stay,
    and a GET by id must not find the erased session there (the other process reads Redis)."""
    writer, other = channels
    session_id = _session_at_version_2(writer, other)
    customer_id = SessionRecord.objects.get(id=session_id).customer_id
    partition.writer_link.cut()

    erased = requests.post(
        f"{writer.base}/api/v1/customers/{customer_id}/erase",
        json={"suppress": False},
        headers={"Authorization": f"Bearer {api_token.secret}"},
        timeout=30,
    )
    read = [other.get(session_id).status_code for _ in range(READS)]
    partition.writer_link.heal()
    read += [writer.get(session_id).status_code for _ in range(READS)]

    assert (erased.status_code, read) == (200, [404] * 2 * READS)
