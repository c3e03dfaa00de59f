"""At-least-once routing with a real Celery worker: kill -9 mid-routing, a broker down at
commit time. Every accepted event ends up routed, none twice."""

from typing import Any

import orjson
import pytest
import requests
from django.db.models import Count

from orchestration.models import RouteLog
from orchestration.tasks import sweep_outbox
from profiles.models import Event, EventOutbox
from tests.conftest import free_port, wait_until, web_server

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EVENTS = 3000
PER_BATCH = 50


def _routed_once_each() -> None:
    counts = RouteLog.objects.values("event_id").annotate(n=Count("id"))
    assert EventOutbox.objects.count() == 0
    assert {row["n"] for row in counts} == {1}
    assert set(RouteLog.objects.values_list("event_id", flat=True)) == set(Event.objects.values_list("id", flat=True))


def test_killed_worker_loses_no_event_and_doubles_none(ingest: Any, worker_factory: Any) -> None:
    for start in range(0, EVENTS, PER_BATCH):
        batch = [
            {"type": "track", "anonymousId": f"a-{i % 300}", "event": "Viewed", "messageId": f"k-{i}"}
            for i in range(start, start + PER_BATCH)
        ]
        assert ingest.post("batch", {"batch": batch}).status_code == 200
    assert Event.objects.count() == EVENTS

    first = worker_factory()
    wait_until(RouteLog.objects.exists, timeout=60, interval=0.005, message="the first worker routes")
    first.kill()
    routed_before_kill = RouteLog.objects.count()
    assert 0 < routed_before_kill < EVENTS, "the worker must die mid-routing for this test to mean anything"

    worker_factory()
    # The killed worker's reserved tasks stay unacknowledged until the broker's visibility
    # timeout; the sweeper is what brings their events back, as it does in production.
    sweep_outbox.apply(kwargs={"older_than_seconds": 0})
    wait_until(lambda: not EventOutbox.objects.exists(), timeout=300, message="the outbox drains")
    _routed_once_each()


def test_broker_down_at_commit_delays_routing_and_loses_nothing(source: Any, worker_factory: Any) -> None:
    """A web process whose broker is unreachable still accepts and stores events (2xx means
    stored); once a worker and the sweeper run against a live broker, every one is routed."""
    # Nothing listens on the broker's port.
    with web_server(threads=4, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0") as (base, _):
        for n in range(4):
            batch = [{"type": "track", "userId": "u", "event": "X", "messageId": f"down-{n}-{i}"} for i in range(25)]
            response = requests.post(
                f"{base}/v1/batch",
                data=orjson.dumps({"batch": batch}),
                auth=(source.write_key, ""),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
    assert Event.objects.count() == 100
    assert EventOutbox.objects.count() == 100

    worker_factory()
    sweep_outbox.apply(kwargs={"older_than_seconds": 0})
    wait_until(lambda: not EventOutbox.objects.exists(), timeout=60, message="the outbox drains")
    _routed_once_each()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
