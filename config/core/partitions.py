"""Time partitions of the large, append-only tables (PostgreSQL declarative RANGE partitioning).

A partitioned table is split on a server-assigned time column into one partition per period
(a month or an ISO week, starting Monday), named `<table>_p<YYYYMMDD of its first day>`, plus a
DEFAULT partition (`<table>_default`) so an insert never fails when the periodic task has not
created a period's partition yet. Old data goes by DETACHing and DROPping whole partitions:
no row-by-row DELETE, no dead tuples, no vacuum debt. Nothing here knows the apps: the
migrations that partition a table and each app's retention service call it with their table,
column and period. pg_partman would do the same, but it is not in the embedded PostgreSQL wheel.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.db import connection, transaction

from config.core.retention import cutoff

Period = Literal["month", "week"]

# A partition operation waits this long for its lock on the parent, then gives up until the
# next run: DDL queued behind a long transaction would otherwise block every insert behind it.
LOCK_TIMEOUT = "5s"

_BOUND = re.compile(r"FROM \((?P<lower>MINVALUE|'[^']*')\) TO \((?P<upper>MAXVALUE|'[^']*')\)")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime | None  # None: MINVALUE
    upper: datetime | None  # None: MAXVALUE
    default: bool = False


def period_start(moment: datetime, period: Period) -> datetime:
    """The first instant (UTC) of the period holding `moment`."""
    moment = moment.astimezone(UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def period_after(start: datetime, period: Period) -> datetime:
    if period == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=7)


def partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _literal(moment: datetime) -> str:
    # DDL takes no bind parameters; a literal made from a datetime holds nothing but its digits.
    return f"'{moment.astimezone(UTC).isoformat()}'"


def _bound(text: str) -> datetime | None:
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    return datetime.fromisoformat(text.strip("'")).astimezone(UTC)


def partitions(table: str) -> list[Partition]:
    """The partitions of `table`, oldest first, the default last."""
    with connection.cursor() as cursor:
        # The bounds are rendered in the session's time zone; Django's connections use UTC.
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        if bound == "DEFAULT":
            found.append(Partition(name=name, lower=None, upper=None, default=True))
            continue
        match = _BOUND.search(bound)
        if match is None:
            raise ValueError(f"{name}: a partition bound this module did not make: {bound}")
        found.append(Partition(name=name, lower=_bound(match["lower"]), upper=_bound(match["upper"])))
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (p.default, p.lower or oldest))


def _overlaps(existing: list[Partition], start: datetime, end: datetime) -> bool:
    return any(
        not p.default and (p.lower is None or p.lower < end) and (p.upper is None or start < p.upper) for p in existing
    )


def _lock_timeout(cursor: Any) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


def partition_create(*, table: str, column: str, start: datetime, period: Period) -> str | None:
    """Create the partition of the period starting at `start`; its name, or None when a
    partition already covers (part of) that period. Rows the default partition holds for the
    period move into it, so the default never keeps what a partition should."""
    start = period_start(start, period)
    end = period_after(start, period)
    existing = partitions(table)
    if _overlaps(existing, start, end):
        return None
    name = partition_name(table, start)
    bounds = f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
    default = default_name(table)
    has_default = any(p.default for p in existing)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_timeout(cursor)
        if has_default:
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {_q(default)} WHERE {_q(column)} >= %s AND {_q(column)} < %s)",  # noqa: S608
                [start, end],
            )
            strays = cursor.fetchone()[0]
        else:
            strays = False
        if not strays:
            cursor.execute(f"CREATE TABLE {_q(name)} PARTITION OF {_q(table)} {bounds}")
            return name
        # Attaching a partition while the default holds rows of its range is refused: move them
        # into a table of the same shape first, then attach it (the check finds none left).
        cursor.execute(f"LOCK TABLE {_q(table)} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"CREATE TABLE {_q(name)} (LIKE {_q(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_q(default)} WHERE {_q(column)} >= %s AND {_q(column)} < %s "  # noqa: S608
            f"RETURNING *) INSERT INTO {_q(name)} SELECT * FROM moved",
            [start, end],
        )
        cursor.execute(f"ALTER TABLE {_q(table)} ATTACH PARTITION {_q(name)} {bounds}")
    return name


def partitions_ensure(*, table: str, column: str, period: Period, now: datetime, ahead: int = 2) -> list[str]:
    """The default partition, the current period's and `ahead` more exist afterwards, and the
    rows the default partition held for any period have one of their own; the names created."""
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_timeout(cursor)
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {_q(default_name(table))} PARTITION OF {_q(table)} DEFAULT")
        unit = "month" if period == "month" else "week"
        cursor.execute(
            f"SELECT DISTINCT date_trunc(%s, {_q(column)}, 'UTC') FROM {_q(default_name(table))}",  # noqa: S608
            [unit],
        )
        strays = sorted(row[0] for row in cursor.fetchall())
    start = period_start(now, period)
    wanted = [*strays]
    for _ in range(ahead + 1):
        wanted.append(start)
        start = period_after(start, period)
    for begin in wanted:
        name = partition_create(table=table, column=column, start=begin, period=period)
        if name:
            created.append(name)
    return created


def partitions_drop_before(*, table: str, cutoff: datetime) -> list[str]:
    """Detach and drop every partition wholly older than `cutoff`; the names dropped. The
    default partition is never dropped (partitions_ensure moves its rows into a period's)."""
    dropped = []
    for part in partitions(table):
        if part.default or part.upper is None or part.upper > cutoff:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            _lock_timeout(cursor)
            cursor.execute(f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(part.name)}")
            cursor.execute(f"DROP TABLE {_q(part.name)}")
        dropped.append(part.name)
    return dropped


def partitions_keep(*, table: str, column: str, period: Period, days: int, now: datetime) -> tuple[int, int]:
    """A partitioned table's retention run: its partitions ensured ahead (partitions_ensure),
    those wholly older than `days` dropped (0 keeps them forever); (created, dropped) counts."""
    created = partitions_ensure(table=table, column=column, period=period, now=now)
    before = cutoff(days, now)
    dropped = partitions_drop_before(table=table, cutoff=before) if before else []
    return len(created), len(dropped)


def _definitions(cursor: Any, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """`table`'s index definitions (besides its primary key) and foreign keys (name, definition)."""
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = %s::regclass "
        "AND NOT i.indisprimary ORDER BY i.indexrelid",
        [table],
    )
    indexes = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype IN ('f', 'u') ORDER BY conname",
        [table],
    )
    return indexes, cursor.fetchall()


def _sequence_value(cursor: Any, table: str, column: str) -> int | None:
    cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
    sequence = cursor.fetchone()[0]
    if sequence is None:
        return None
    cursor.execute(f"SELECT last_value, is_called FROM {sequence}")  # noqa: S608 - a catalog name
    value, called = cursor.fetchone()
    return int(value) if called else int(value) - 1


def table_partition(*, table: str, column: str, period: Period, now: datetime, ahead: int = 2) -> None:
    """Turn the plain table `table` into one partitioned by RANGE on `column` (for migrations).

    The database primary key becomes (id, column): a unique constraint on a partitioned table
    must include the partition key. An identity `id` stays an identity of the new table,
    continuing where the old one was. The existing rows are not copied: the old table is renamed
    and, if it holds any, attached as the first partition, FROM (MINVALUE) TO the start of the
    period after its newest row (or now), after it gets the new primary key; it is dropped when
    retention passes that bound. Unique constraints other than the key cannot span partitions
    and must be gone before this is called.
    """
    legacy = f"{table}_legacy"
    with connection.cursor() as cursor:
        indexes, constraints = _definitions(cursor, table)
        if any(definition.startswith("UNIQUE") for _, definition in constraints):
            raise ValueError(f"{table}: drop its unique constraints before partitioning it")
        last_id = _sequence_value(cursor, table, "id")
        cursor.execute(f"SELECT max({_q(column)}) FROM {_q(table)}")  # noqa: S608
        newest = cursor.fetchone()[0]
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_q(table)})")  # noqa: S608
        has_rows = cursor.fetchone()[0]
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [table])
        primary_key = cursor.fetchone()[0]
        # The old table's index names move aside so the new table's take them (Django and later
        # migrations know the indexes by name); attached, its indexes become the partitions'.
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
            [table],
        )
        for (index,) in cursor.fetchall():
            cursor.execute(f"ALTER INDEX {_q(index)} RENAME TO {_q(_legacy_name(index))}")
        if last_id is not None:
            cursor.execute(f"ALTER TABLE {_q(table)} ALTER COLUMN id DROP IDENTITY")
        cursor.execute(f"ALTER TABLE {_q(table)} DROP CONSTRAINT {_q(primary_key)}")
        cursor.execute(f"ALTER TABLE {_q(table)} RENAME TO {_q(legacy)}")
        cursor.execute(
            f"CREATE TABLE {_q(table)} (LIKE {_q(legacy)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            f"INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({_q(column)})"
        )
        if last_id is not None:
            _identity_continue(cursor, table, last_id)
        cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(primary_key)} PRIMARY KEY (id, {_q(column)})")
        for definition in indexes:
            cursor.execute(_on_table(definition, table))
        for name, definition in constraints:
            cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} {definition}")
        if has_rows:
            boundary = period_after(period_start(max(newest, now), period), period)
            cursor.execute(f"ALTER TABLE {_q(legacy)} ADD PRIMARY KEY (id, {_q(column)})")
            cursor.execute(
                f"ALTER TABLE {_q(table)} ATTACH PARTITION {_q(legacy)} "
                f"FOR VALUES FROM (MINVALUE) TO ({_literal(boundary)})"
            )
        else:
            cursor.execute(f"DROP TABLE {_q(legacy)}")
    partitions_ensure(table=table, column=column, period=period, now=now, ahead=ahead)


def _identity_continue(cursor: Any, table: str, last_id: int) -> None:
    """`table`'s id an identity column again, going on from `last_id` (ids are never reused)."""
    cursor.execute(
        f"ALTER TABLE {_q(table)} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY "
        f"(SEQUENCE NAME {_q(table + '_id_seq')})"
    )
    if last_id > 0:
        cursor.execute("SELECT setval(%s, %s)", [f"{table}_id_seq", last_id])


def _legacy_name(index: str) -> str:
    return f"{index[:50]}_legacy"


def _on_table(definition: str, table: str) -> str:
    """An index definition read from the old table, rewritten for the new (partitioned) one:
    same name and columns, on `table`. Partitioned indexes cannot be built CONCURRENTLY."""
    definition = re.sub(r" ON (ONLY )?\S+ ", f" ON {_q(table)} ", definition, count=1)
    return re.sub(r"^CREATE (UNIQUE )?INDEX (\S+)_legacy ", r"CREATE \1INDEX \2 ", definition)


def table_unpartition(*, table: str, column: str) -> None:
    """The reverse of table_partition (for migrations run backwards): a plain table with every
    row, primary key `id`, the same indexes and foreign keys, an identity continuing."""
    plain = f"{table}_plain"
    with connection.cursor() as cursor:
        indexes, constraints = _definitions(cursor, table)
        last_id = _sequence_value(cursor, table, "id")
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [table])
        primary_key = cursor.fetchone()[0]
        cursor.execute(
            f"CREATE TABLE {_q(plain)} (LIKE {_q(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING STORAGE INCLUDING COMMENTS)"
        )
        cursor.execute(f"INSERT INTO {_q(plain)} SELECT * FROM {_q(table)}")  # noqa: S608
        cursor.execute(f"DROP TABLE {_q(table)} CASCADE")
        cursor.execute(f"ALTER TABLE {_q(plain)} RENAME TO {_q(table)}")
        cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(primary_key)} PRIMARY KEY (id)")
        if last_id is not None:
            _identity_continue(cursor, table, last_id)
        for definition in indexes:
            cursor.execute(_on_table(definition, table))
        for name, definition in constraints:
            cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} {definition}")
