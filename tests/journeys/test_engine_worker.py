"""Idempotent redelivery with a real Celery worker: killed with SIGKILL in the middle of a
journey step, the routing is redone by the next worker and acts once. One delivery, one
history row per step key; the webhook a step calls is repeated with the same Idempotency-Key."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models import Count

from channels.models import Delivery
from journeys.models import Enrollment, StepRun
from orchestration.tasks import sweep_outbox
from profiles.models import EventOutbox
from tests.channels.servers import HttpSink, start_http_sink
from tests.conftest import wait_until
from tests.journeys.engine_support import publish

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slow_sink() -> Iterator[HttpSink]:
    sink = start_http_sink()
    sink.delay = 60.0  # the worker waits here, mid-step, until the test kills it
    yield sink
    sink.delay = 0.0
    sink.stop()


def test_a_worker_killed_mid_step_leaves_no_double_action(
    ingest: Any, worker_factory: Any, slow_sink: HttpSink, monkeypatch: Any
) -> None:
    monkeypatch.setenv("JOURNEYS_WEBHOOK_TIMEOUT_SECONDS", "90")
    # Journeys run in key order: "a-email" delivers (uncommitted), then "b-webhook" blocks.
    publish(
        {
            "trigger": {"type": "event", "event": "Cart Abandoned"},
            "start": "email",
            "steps": {
                "email": {
                    "type": "message",
                    "channels": ["email"],
                    "purpose": "transactional",
                    "content": {"email": {"subject": "Your cart", "body": "Still there"}},
                    "next": "done",
                },
                "done": {"type": "exit"},
            },
        },
        key="a-email",
    )
    publish(
        {
            "trigger": {"type": "event", "event": "Cart Abandoned"},
            "start": "hook",
            "steps": {
                "hook": {"type": "webhook", "url": f"{slow_sink.url}/crm", "next": "done"},
                "done": {"type": "exit"},
            },
        },
        key="b-webhook",
    )
    batch = [
        {"type": "identify", "userId": "w1", "traits": {"email": "w1@example.com"}, "messageId": "w-1"},
        {"type": "track", "userId": "w1", "event": "Cart Abandoned", "messageId": "w-2"},
    ]
    assert ingest.post("batch", {"batch": batch}).status_code == 200

    first = worker_factory()
    wait_until(lambda: len(slow_sink.requests) == 1, timeout=60, message="the worker reaches the webhook step")
    first.kill()
    assert not Delivery.objects.exists(), "the step's delivery rolled back with the routing transaction"
    assert not Enrollment.objects.exists()
    assert EventOutbox.objects.exists(), "the events wait on the outbox for another router"

    slow_sink.delay = 0.0
    worker_factory()
    sweep_outbox.apply(kwargs={"older_than_seconds": 0})
    wait_until(
        lambda: Enrollment.objects.filter(status="completed").count() == 1 and Enrollment.objects.count() == 2,
        timeout=90,
        message="the second worker runs both journeys",
    )
    wait_until(lambda: not EventOutbox.objects.exists(), timeout=30, message="the outbox drains")

    (delivery,) = Delivery.objects.all()
    email = Enrollment.objects.get(journey__key="a-email")
    assert delivery.idempotency_key == f"journey:{email.id}:email:1:email"
    assert not StepRun.objects.values("key").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert StepRun.objects.filter(enrollment=email, step="email", outcome="delivering").count() == 1
    keys = {request.headers["Idempotency-Key"] for request in slow_sink.requests}
    assert len(slow_sink.requests) == 2
    assert len(keys) == 1, "the repeated webhook carries the first attempt's key"
