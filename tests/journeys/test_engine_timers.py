"""Durable timers: concurrent ticks claim due timers FOR UPDATE SKIP LOCKED, so none fires
twice and none waits on another tick; a timer whose enrollment is busy waits for the next tick."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from journeys.models import Enrollment, StepRun, Timer
from journeys.services import enrollment_start, timers_tick
from tests.conftest import wait_until
from tests.factories import CustomerFactory
from tests.journeys.engine_support import publish

WAIT = {
    "trigger": {"type": "api"},
    "start": "pause",
    "steps": {"pause": {"type": "wait", "duration": {"minutes": 5}, "next": "done"}, "done": {"type": "exit"}},
}


def _waiting(count: int) -> None:
    version = publish(WAIT, key="timers")
    for _ in range(count):
        enrollment_start(journey=version.journey, customer_id=CustomerFactory.create().id)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_ticks_fire_each_timer_once() -> None:
    _waiting(200)
    later = timezone.now() + timedelta(minutes=6)
    barrier = threading.Barrier(2)
    fired: list[int] = []

    def tick() -> None:
        barrier.wait()
        try:
            fired.append(timers_tick(now=later, batch=20))
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(fired) == 200
    assert Timer.objects.filter(fired_at__isnull=False).count() == 200
    assert StepRun.objects.filter(outcome="waited").count() == 200
    assert Enrollment.objects.filter(status="completed").count() == 200


@pytest.mark.django_db(transaction=True)
def test_a_tick_skips_an_enrollment_another_transaction_holds() -> None:
    _waiting(2)
    busy = Enrollment.objects.order_by("id").first()
    assert busy is not None
    later = timezone.now() + timedelta(minutes=6)
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Enrollment.objects.select_for_update().get(id=busy.id)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        assert timers_tick(now=later) == 1
    finally:
        release.set()
        holder.join(10)
    assert timers_tick(now=later) == 1
    assert Enrollment.objects.filter(status="completed").count() == 2


@pytest.mark.django_db
def test_a_timer_for_a_step_the_customer_left_does_nothing(ingest: Any) -> None:
    _waiting(1)
    enrollment = Enrollment.objects.get()
    Enrollment.objects.filter(id=enrollment.id).update(step="done", waiting_for=None)
    assert timers_tick(now=timezone.now() + timedelta(minutes=6)) == 1
    assert not StepRun.objects.filter(outcome="waited").exists()


@pytest.mark.django_db
def test_the_beat_task_fires_due_timers_on_the_journeys_queue(settings: Any) -> None:
    from journeys.tasks import tick_timers

    version = publish(WAIT, key="timers")
    enrollment = enrollment_start(
        journey=version.journey, customer_id=CustomerFactory.create().id, now=timezone.now() - timedelta(minutes=10)
    )
    assert tick_timers.apply().get() == 1
    enrollment.refresh_from_db()
    assert enrollment.status == "completed"
    schedule = next(
        entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == "journeys.tick_timers"
    )
    assert schedule["schedule"] <= 0.25  # the interval is part of every timer's lag
    assert settings.CELERY_TASK_ROUTES["journeys.tick_timers"] == {"queue": "journeys"}


@pytest.mark.django_db
def test_a_backlog_larger_than_a_batch_asks_for_helpers_once() -> None:
    _waiting(5)
    calls: list[int] = []
    fired = timers_tick(now=timezone.now() + timedelta(minutes=6), batch=2, on_backlog=lambda: calls.append(1))
    assert (fired, calls) == (5, [1])
    assert timers_tick(now=timezone.now() + timedelta(minutes=6), batch=2, on_backlog=lambda: calls.append(1)) == 0
    assert calls == [1]


@pytest.mark.django_db
def test_the_next_due_timer_is_the_first_unfired_one_inside_the_window() -> None:
    from journeys.selectors import timers_next_due

    _waiting(3)
    now = timezone.now()
    timers = list(Timer.objects.order_by("id"))
    Timer.objects.filter(id=timers[0].id).update(due_at=now + timedelta(seconds=0.1), fired_at=now)
    Timer.objects.filter(id=timers[1].id).update(due_at=now + timedelta(seconds=0.2))
    Timer.objects.filter(id=timers[2].id).update(due_at=now + timedelta(seconds=0.5))
    assert timers_next_due(after=now, until=now + timedelta(seconds=0.25)) == now + timedelta(seconds=0.2)
    assert timers_next_due(after=now, until=now + timedelta(seconds=0.15)) is None


def test_a_beat_tick_sends_a_tick_for_a_timer_due_before_the_next_beat(worker_factory: Any, settings: Any) -> None:
    from journeys.tasks import tick_timers

    settings.JOURNEYS_TICK_INTERVAL_SECONDS = 30.0
    version = publish(WAIT, key="timers")
    enrollment = enrollment_start(
        journey=version.journey,
        customer_id=CustomerFactory.create().id,
        now=timezone.now() - timedelta(minutes=5) + timedelta(seconds=3),
    )
    timer = Timer.objects.get(enrollment=enrollment)
    assert tick_timers.apply().get() == 0  # nothing due yet; the next beat would be 30 s away
    worker_factory(queues="journeys")
    wait_until(
        lambda: Enrollment.objects.filter(id=enrollment.id, status="completed").exists(),
        timeout=60,
        message="the timer fires from the tick sent for its due time, with no beat running",
    )
    timer.refresh_from_db()
    assert timer.fired_at is not None and timer.fired_at >= timer.due_at
