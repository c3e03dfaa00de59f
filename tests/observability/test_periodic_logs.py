"""Quiet logs: a periodic task that found nothing to do logs nothing at INFO (the timer tick runs
four times a second); one that did something says so in one line; other tasks keep Celery's."""

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from channels.tasks import poll_feeds, sweep_stuck_deliveries
from journeys.models import Timer
from journeys.services import enrollment_start
from journeys.tasks import recheck_segments, tick_timers
from orchestration.tasks import apply_retention, route_events, sweep_outbox
from sessions.tasks import end_inactive_sessions
from tests.factories import CustomerFactory
from tests.journeys.engine_support import publish

pytestmark = pytest.mark.django_db

PERIODIC = {
    task.name: task
    for task in (
        tick_timers,
        recheck_segments,
        sweep_stuck_deliveries,
        poll_feeds,
        sweep_outbox,
        end_inactive_sessions,
        apply_retention,
    )
}
WAIT = {
    "trigger": {"type": "api"},
    "start": "pause",
    "steps": {"pause": {"type": "wait", "duration": {"minutes": 5}, "next": "done"}, "done": {"type": "exit"}},
}


def info_and_above(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{record.name}: {record.getMessage()}" for record in caplog.records if record.levelno >= logging.INFO]


def canary() -> None:
    """A line logged after the task: it shows the capture was still in place."""
    logging.getLogger("canary").info("still listening")


def test_an_idle_timer_tick_logs_nothing_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        fired = tick_timers.apply(throw=True).get()
        canary()

    assert (fired, info_and_above(caplog)) == (0, ["canary: still listening"])


def test_the_periodic_tasks_here_are_the_schedule_s() -> None:
    assert set(PERIODIC) == {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


@pytest.mark.parametrize("task", sorted(PERIODIC))
def test_every_periodic_task_logs_nothing_at_info_when_idle(caplog: pytest.LogCaptureFixture, task: str) -> None:
    with caplog.at_level(logging.INFO):
        PERIODIC[task].apply(throw=True)
        canary()

    assert info_and_above(caplog) == ["canary: still listening"]


def test_a_tick_that_fired_timers_says_so_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    version = publish(WAIT, key="quiet")
    enrollment_start(journey=version.journey, customer_id=CustomerFactory.create().id)
    Timer.objects.update(due_at=timezone.now() - timedelta(seconds=1))

    with caplog.at_level(logging.INFO):
        tick_timers.apply(throw=True)

    assert info_and_above(caplog) == ["journeys.tasks: fired 1 journey timers"]


def test_celery_keeps_its_lines_about_other_tasks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        route_events.apply(args=([],), throw=True)

    lines = [line.split("[")[0] for line in info_and_above(caplog)]
    assert lines == ["celery.app.trace: Task orchestration.route_events"]


@pytest.mark.parametrize(("task", "kept"), [("journeys.tick_timers", False), ("orchestration.route_events", True)])
def test_beat_sending_a_periodic_task_is_not_logged(caplog: pytest.LogCaptureFixture, task: str, kept: bool) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "entry", task)

    assert bool(caplog.records) is kept
