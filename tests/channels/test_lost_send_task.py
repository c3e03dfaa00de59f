"""A delivery whose send task the broker lost (a Redis broker restarted without persistence) is
sent by the stuck-delivery sweeper, once, through a real worker on a broker of the test's own."""

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from channels.models import Delivery
from channels.services.deliveries import deliver
from config.celery import app
from tests.channels.factories import customer_with
from tests.channels.servers import HttpSink
from tests.conftest import WorkerProcess, wait_until
from tests.throwaway import ThrowawayRedis, throwaway_redis

pytestmark = pytest.mark.worker

PHONE = "+14155550100"


@pytest.fixture
def broker() -> Iterator[ThrowawayRedis]:
    with throwaway_redis() as server:
        yield server


def _status(delivery: Delivery) -> str:
    delivery.refresh_from_db()
    return delivery.status


def test_a_delivery_whose_send_task_a_broker_restart_lost_is_sent_once_by_the_sweeper(
    worker_factory: Callable[..., WorkerProcess],
    http_sink: HttpSink,
    broker: ThrowawayRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "TWILIO_BASE_URL": http_sink.url,
        "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000001",
        "TWILIO_AUTH_TOKEN": "primary-token",
        "TWILIO_FROM_NUMBER": "+15005550006",
        "SMS_SECONDARY_BASE_URL": "",
    }.items():
        monkeypatch.setenv(name, value)
    customer = customer_with(user_id="u1", phone=PHONE)
    delivery = deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="lost-1")
    with app.connection_for_write(url=broker.url) as conn:
        app.send_task("channels.send_delivery", args=(str(delivery.id),), queue="delivery", connection=conn)
    broker.kill()
    broker.start()  # empty: the send task is gone
    worker_factory(queues="delivery,maintenance", concurrency=2, env={"CELERY_BROKER_URL": broker.url})
    Delivery.objects.filter(id=delivery.id).update(updated_at=timezone.now() - timedelta(minutes=20))

    # What beat sends every CHANNELS_SWEEP_INTERVAL_SECONDS.
    with app.connection_for_write(url=broker.url) as conn:
        app.send_task("channels.sweep_stuck_deliveries", queue="maintenance", connection=conn)
    wait_until(lambda: _status(delivery) == "sent", timeout=60, message="sent after the sweep")

    # The lost task turns up after all (a broker that kept it, a slow queue): nothing is sent again.
    with app.connection_for_write(url=broker.url) as conn:
        late = app.send_task("channels.send_delivery", args=(str(delivery.id),), queue="delivery", connection=conn)
    client = redis.Redis.from_url(broker.url)
    wait_until(
        lambda: client.llen("delivery") == 0 and not any(late.id.encode() in m for m in client.hvals("unacked")),
        timeout=30,
        message="the late task ran",
    )
    assert len(http_sink.requests) == 1
    assert Delivery.objects.get(id=delivery.id).status == "sent"
