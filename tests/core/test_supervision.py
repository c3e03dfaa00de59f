"""Workers stay up: a worker outlives broker restarts and outages. Each test has a broker of its
own (a throwaway redis-server it kills), never the shared one."""

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from config.celery import app
from tests.conftest import WorkerProcess
from tests.throwaway import ThrowawayRedis, throwaway_redis, wait_until

pytestmark = pytest.mark.worker

# Tasks with a countdown stay reserved in the worker, unacknowledged, until they are due: with
# acks_late every reserved task is held so, as a busy routing worker holds its prefetched ones.
HELD = 3


@pytest.fixture
def broker() -> Iterator[ThrowawayRedis]:
    with throwaway_redis() as server:
        yield server


def _publish(broker_url: str, *, queue: str = "routing") -> str:
    """HELD tasks due in an hour, then one due now; the id of the one due now. Celery's own
    `celery.accumulate` task: every worker has it and it needs nothing."""
    with app.connection_for_write(url=broker_url) as conn:
        for _ in range(HELD):
            app.send_task("celery.accumulate", args=(1,), queue=queue, countdown=3600, connection=conn)
        return str(app.send_task("celery.accumulate", args=(1,), queue=queue, connection=conn).id)


def _done(broker_url: str, task_id: str, *, queue: str = "routing") -> Callable[[], bool]:
    """Whether the worker took the task off the queue, ran it and acknowledged it (acks_late:
    its message leaves the broker's `unacked` hash once it ran)."""
    client = redis.Redis.from_url(broker_url)

    def done() -> bool:
        if client.llen(queue):
            return False
        return not any(task_id.encode() in message for message in client.hvals("unacked"))

    return done


def test_a_worker_holding_unacknowledged_tasks_survives_repeated_broker_restarts(
    worker_factory: Callable[..., WorkerProcess], broker: ThrowawayRedis
) -> None:
    worker = worker_factory(concurrency=1, queues="routing", broker_url=broker.url)
    wait_until(_done(broker.url, _publish(broker.url)), timeout=60, message="the worker consumes")
    assert worker.process is not None

    for drop in range(8):
        broker.kill()
        time.sleep(1)
        broker.start()  # empty, on the same port: a Redis restart without persistence
        wait_until(_done(broker.url, _publish(broker.url)), timeout=40, message=f"consumes after restart {drop + 1}")
        assert worker.process.poll() is None, f"the worker exited after restart {drop + 1}"


def test_a_worker_outlives_a_broker_outage_of_35_seconds(
    worker_factory: Callable[..., WorkerProcess], broker: ThrowawayRedis
) -> None:
    worker = worker_factory(concurrency=1, queues="routing", broker_url=broker.url)
    wait_until(_done(broker.url, _publish(broker.url)), timeout=60, message="the worker consumes")

    broker.kill()
    time.sleep(35)
    broker.start()

    # Reconnection attempts back off to at most 30 s apart.
    wait_until(_done(broker.url, _publish(broker.url)), timeout=45, message="the worker consumes again")
    assert worker.process is not None and worker.process.poll() is None


def test_workers_retry_the_broker_forever_from_start_up() -> None:
    # Celery's default gives up after 100 attempts (about 45 minutes of an outage) and the worker exits.
    assert app.conf.broker_connection_max_retries is None
    assert app.conf.broker_connection_retry_on_startup is True
