"""Retention (orchestration.apply_retention): partitions past their retention dropped, the rest
kept; deduplication held for the window across partition boundaries and dropped partitions;
the narrow tables trimmed in batches."""

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus
from config.core import partitions
from journeys.models import Decision, Enrollment, EnrollmentStatus, StepRun, Timer
from orchestration import retention
from orchestration.models import RouteLog
from orchestration.tasks import apply_retention
from profiles.contracts import SourceInfo
from profiles.ingest import event_ingest
from profiles.ingest_store import IngestResult
from profiles.models import Event, EventKey, QuarantinedMessage
from tests.conftest import _database_url
from tests.factories import QuarantinedMessageFactory, SourceFactory
from tests.journeys.factories import DecisionFactory, EnrollmentFactory, StepRunFactory, TimerFactory
from tests.throwaway import wait_until

# A moment far from the partitions the test database has, at the start of a month.
LATER = datetime(2031, 3, 2, 12, tzinfo=UTC)

# Two ways an event is stored: one statement (a simple track call) or the general path
# (an identify with traits), each with its own insert.
MESSAGES: dict[str, tuple[str, dict[str, Any]]] = {
    "simple": ("track", {"anonymousId": "a-1", "event": "Viewed"}),
    "general": ("identify", {"userId": "u-1", "traits": {"plan": "pro"}}),
}


def _info(source: Any) -> SourceInfo:
    return SourceInfo(id=source.id, name=source.name, channel=source.channel, enabled=True, identity_kinds=frozenset())


def _send(source: Any, message_id: str, received_at: datetime, path: str = "simple") -> IngestResult:
    call_type, body = MESSAGES[path]
    message = {**body, "messageId": message_id}
    return event_ingest(source=_info(source), raw_messages=[message], call_type=call_type, received_at=received_at)


def _names(table: str) -> set[str]:
    return {p.name for p in partitions.partitions(table)}


@pytest.mark.django_db
def test_event_partitions_past_retention_are_dropped_and_the_rest_kept(settings: Any) -> None:
    settings.RETENTION_EVENTS_DAYS = 60
    source = SourceFactory()
    now = timezone.now()
    for days in (200, 100, 5):
        _send(source, f"m-{days}", now - timedelta(days=days))

    apply_retention()

    old = partitions.partition_name("profiles_event", partitions.period_start(now - timedelta(days=100), "month"))
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-5"]
    assert old not in _names("profiles_event")


@pytest.mark.django_db
def test_a_retention_of_zero_keeps_events_forever(settings: Any) -> None:
    settings.RETENTION_EVENTS_DAYS = 0
    _send(SourceFactory(), "ancient", timezone.now() - timedelta(days=3000))

    apply_retention()

    assert Event.objects.filter(message_id="ancient").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["simple", "general"])
def test_a_retry_across_a_partition_boundary_is_a_duplicate(path: str) -> None:
    source = SourceFactory()
    for month in (1, 2):
        partitions.partition_create(
            table="profiles_event", column="received_at", start=datetime(2031, month, 1, tzinfo=UTC), period="month"
        )
    _send(source, "retried", datetime(2031, 1, 31, 23, 59, tzinfo=UTC), path)

    again = _send(source, "retried", datetime(2031, 2, 1, 0, 1, tzinfo=UTC), path)

    assert (again.accepted, again.duplicates, Event.objects.filter(message_id="retried").count()) == (0, 1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["simple", "general"])
def test_a_retry_inside_the_window_is_a_duplicate_after_its_events_partition_was_dropped(
    settings: Any, path: str
) -> None:
    settings.RETENTION_EVENTS_DAYS = 1
    source = SourceFactory()
    _send(source, "retried", LATER - timedelta(days=3), path)
    retention.retention_apply(now=LATER)
    dropped = not Event.objects.filter(message_id="retried").exists()

    again = _send(source, "retried", LATER, path)

    assert (dropped, again.accepted, again.duplicates) == (True, 0, 1)
    assert not Event.objects.filter(message_id="retried").exists()


@pytest.mark.django_db
def test_a_key_older_than_the_window_is_forgotten_and_the_message_accepted_again() -> None:
    source = SourceFactory()
    _send(source, "late", LATER - timedelta(days=django_settings.DEDUP_WINDOW_DAYS, hours=1))
    retention.retention_apply(now=LATER)

    again = _send(source, "late", LATER)

    assert (again.accepted, EventKey.objects.get(message_id="late").received_at) == (1, LATER)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("committed", "stored"), [(True, 0), (False, 1)])
def test_a_concurrent_duplicate_waits_for_the_other_transaction_and_is_stored_once(
    committed: bool, stored: int
) -> None:
    """Another request holds the same key, uncommitted: this one waits for it, then stores
    nothing if it committed, the event if it rolled back."""
    source: Any = SourceFactory()
    results: list[IngestResult] = []
    with psycopg.connect(_database_url(connection.settings_dict["NAME"])) as other:
        other.execute(
            "INSERT INTO profiles_eventkey (source_id, message_id, received_at, event_id) "
            "VALUES (%s, 'race', now(), 0)",
            [source.id],
        )

        def send() -> None:
            try:
                results.append(_send(source, "race", timezone.now()))
            finally:
                connection.close()

        thread = threading.Thread(target=send)
        thread.start()
        wait_until(lambda: _waiting_on_a_lock(other), timeout=10, message="the second request waits on the key")
        other.commit() if committed else other.rollback()
        thread.join(timeout=10)

    assert (results[0].accepted, Event.objects.filter(message_id="race").count()) == (stored, stored)


def _waiting_on_a_lock(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    return bool(row and row[0])


@pytest.mark.django_db
def test_route_log_and_decision_partitions_past_retention_are_dropped(settings: Any) -> None:
    settings.RETENTION_ROUTE_LOG_DAYS = 30
    settings.RETENTION_DECISIONS_DAYS = 90
    now = timezone.now()
    for days in (120, 20, 1):
        RouteLog.objects.create(event_id=days, routed_at=now - timedelta(days=days), lag_ms=1)
        DecisionFactory(placement=f"p-{days}", at=now - timedelta(days=days))

    apply_retention()

    assert sorted(RouteLog.objects.values_list("event_id", flat=True)) == [1, 20]
    assert sorted(Decision.objects.values_list("placement", flat=True)) == ["p-1", "p-20"]


@pytest.mark.django_db
def test_enrollments_finished_past_retention_go_with_their_step_runs_and_timers(settings: Any) -> None:
    settings.RETENTION_STEP_RUNS_DAYS = 180
    old = timezone.now() - timedelta(days=200)
    finished: Any = EnrollmentFactory(status=EnrollmentStatus.COMPLETED, entered_at=old, ended_at=old)
    running: Any = EnrollmentFactory(status=EnrollmentStatus.ACTIVE, entered_at=old)
    recent: Any = EnrollmentFactory(status=EnrollmentStatus.EXITED, ended_at=timezone.now())
    for enrollment in (finished, running, recent):
        StepRunFactory(enrollment=enrollment)
        TimerFactory(enrollment=enrollment)
    Enrollment.objects.filter(id__in=[finished.id, running.id]).update(created_at=old)

    apply_retention()

    kept = {running.id, recent.id}
    assert set(Enrollment.objects.values_list("id", flat=True)) == kept
    assert set(StepRun.objects.values_list("enrollment_id", flat=True)) == kept
    assert set(Timer.objects.values_list("enrollment_id", flat=True)) == kept


@pytest.mark.django_db
def test_deliveries_finished_past_retention_are_deleted_and_unfinished_ones_kept(settings: Any) -> None:
    settings.RETENTION_DELIVERIES_DAYS = 180
    old = timezone.now() - timedelta(days=200)
    for key, status, finished_at in [
        ("old-done", DeliveryStatus.DELIVERED, old),
        ("old-queued", DeliveryStatus.QUEUED, None),
        ("new-done", DeliveryStatus.DELIVERED, timezone.now()),
    ]:
        delivery = Delivery.objects.create(
            idempotency_key=key,
            channel="email",
            customer_id=uuid.uuid4(),
            status=status,
            queued_at=old,
            finished_at=finished_at,
        )
        Delivery.objects.filter(id=delivery.id).update(created_at=old if key.startswith("old") else timezone.now())

    apply_retention()

    assert sorted(Delivery.objects.values_list("idempotency_key", flat=True)) == ["new-done", "old-queued"]


@pytest.mark.django_db
def test_resolved_quarantined_messages_past_retention_are_deleted_and_open_ones_kept(settings: Any) -> None:
    settings.RETENTION_QUARANTINE_RESOLVED_DAYS = 90
    old = timezone.now() - timedelta(days=100)
    resolved: Any = QuarantinedMessageFactory(received_at=old, resolved_at=old)
    still_open: Any = QuarantinedMessageFactory(received_at=old)

    apply_retention()

    assert list(
        QuarantinedMessage.objects.filter(id__in=[resolved.id, still_open.id]).values_list("id", flat=True)
    ) == [still_open.id]


def test_a_dedup_window_under_seven_days_is_refused_at_start_up() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DEDUP_WINDOW_DAYS": "3"}
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode != 0
    assert "DEDUP_WINDOW_DAYS=3: the deduplication window is at least 7 days" in run.stderr
