"""Time partitions (config/core/partitions.py) of events, the route log and decisions: what
migrate leaves, where rows land, and the migration of a table that already holds rows."""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from config.core import partitions
from profiles.contracts import SourceInfo
from profiles.ingest import event_ingest
from profiles.models import Event
from tests.factories import SourceFactory

TABLES = [
    ("profiles_event", "received_at", "month"),
    ("orchestration_routelog", "routed_at", "week"),
    ("journeys_decision", "at", "week"),
]


def _info(source: Any) -> SourceInfo:
    return SourceInfo(id=source.id, name=source.name, channel=source.channel, enabled=True, identity_kinds=frozenset())


def _track(source: Any, message_id: str, received_at: datetime) -> list[int]:
    message = {"anonymousId": "a-1", "event": "Viewed", "messageId": message_id}
    return event_ingest(
        source=_info(source), raw_messages=[message], call_type="track", received_at=received_at
    ).event_ids


def _partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM profiles_event WHERE id = %s", [event_id])
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
@pytest.mark.parametrize(("table", "column", "period"), TABLES)
def test_migrate_leaves_the_current_period_two_ahead_and_a_default(table: str, column: str, period: Any) -> None:
    start = partitions.period_start(timezone.now(), period)
    wanted = [start]
    for _ in range(2):
        wanted.append(partitions.period_after(wanted[-1], period))

    names = {p.name for p in partitions.partitions(table)}

    assert {partitions.partition_name(table, s) for s in wanted} | {f"{table}_default"} <= names


@pytest.mark.django_db
def test_an_event_received_now_lands_in_this_months_partition() -> None:
    (event_id,) = _track(SourceFactory(), "now-1", timezone.now())

    assert _partition_of(event_id) == partitions.partition_name(
        "profiles_event", partitions.period_start(timezone.now(), "month")
    )


@pytest.mark.django_db
@pytest.mark.parametrize("years", [-3, 3])
def test_an_event_outside_every_partition_is_stored_in_the_default_then_moved_to_its_own(years: int) -> None:
    received = timezone.now() + timedelta(days=365 * years)
    (event_id,) = _track(SourceFactory(), f"far-{years}", received)
    landed = _partition_of(event_id)

    partitions.partitions_ensure(table="profiles_event", column="received_at", period="month", now=timezone.now())

    own = partitions.partition_name("profiles_event", partitions.period_start(received, "month"))
    assert (landed, _partition_of(event_id)) == ("profiles_event_default", own)


@pytest.mark.django_db
def test_a_partition_created_for_a_past_period_takes_its_rows_from_the_default() -> None:
    received = datetime(2020, 5, 17, 12, tzinfo=UTC)
    (event_id,) = _track(SourceFactory(), "past-1", received)

    name = partitions.partition_create(table="profiles_event", column="received_at", start=received, period="month")

    assert (name, _partition_of(event_id)) == ("profiles_event_p20200501", "profiles_event_p20200501")


@pytest.mark.django_db
def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    wednesday = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)

    assert (partitions.period_start(wednesday, "week"), partitions.period_start(wednesday, "month")) == (
        datetime(2026, 12, 7, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )


# --- The migration of a table that already holds rows ---------------------------------------------

BEFORE = [("profiles", "0008_source_allowed_origins")]


def _migrate(targets: Sequence[tuple[str, str | None]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


@pytest.fixture
def events_unpartitioned(transactional_db: Any) -> Iterator[None]:
    """The events table as the previous code left it; afterwards migrated forward again from an
    empty table, so the tests after this one find the partitions a new database has."""
    latest = list(MigrationExecutor(connection).loader.graph.leaf_nodes())
    try:
        _migrate(BEFORE)
        yield
    finally:
        _migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE profiles_event CASCADE")
        _migrate(latest)


def test_existing_events_become_the_first_partition_and_ids_continue(events_unpartitioned: None) -> None:
    source: Any = SourceFactory()
    old = timezone.now() - timedelta(days=40)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_customer (id, traits, trait_times, once_keys, computed_state, created_at, "
            "updated_at) VALUES (gen_random_uuid(), '{}', '{}', '[]', '{}', now(), now()) RETURNING id"
        )
        customer_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO profiles_event (source_id, message_id, type, name, customer_id, channel, user_id, "
            "anonymous_id, timestamp, received_at, properties, context, extra, schema_violations) "
            "VALUES (%s, 'kept', 'track', 'Old', %s, 'web', '', 'a-1', %s, %s, '{}', '{}', '{}', '[]') RETURNING id",
            [source.id, customer_id, old, old],
        )
        old_id = cursor.fetchone()[0]

    _migrate(list(MigrationExecutor(connection).loader.graph.leaf_nodes()))
    (new_id,) = _track(source, "new", timezone.now())

    assert (_partition_of(old_id), Event.objects.get(id=old_id).name) == ("profiles_event_legacy", "Old")
    assert new_id > old_id
