"""Where the timer tick's time goes, without Celery or a watcher in the way.

Seeds N enrollments of a journey whose first step is a wait, each with its durable timer due
at the same moment (rows written directly, as many as `make bench-journeys` makes through
ingestion), then fires them in-process with `timers_tick` and reports, per batch and per timer:
the statements sent, the CPU of this Python process and of the PostgreSQL backend serving it,
and the wall time. With --cprofile it also prints the functions that take the time.

    .venv/bin/python bench/profile_timers.py -n 10000
    .venv/bin/python bench/profile_timers.py -n 2000 --cprofile
    .venv/bin/python bench/profile_timers.py -n 2000 --journey message

`--journey wait` (default) is bench/journeys.py's timer journey (wait, then exit);
`--journey message` sends an email when the wait ends (the abandoned-cart shape: each firing
also checks the channels, the contact policy and records a delivery).

It creates (and drops first) the database throughline_bench_profile_timers (BENCH_PROFILE_DB
overrides it; BENCH_PROFILE_REDIS the Redis URL prefix, default redis://127.0.0.1:6379 with
databases BENCH_REDIS_CACHE_DB / BENCH_REDIS_BROKER_DB, default 12 and 13).
"""

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = "postgres://postgres@127.0.0.1:5432"
DB_NAME = os.environ.get("BENCH_PROFILE_DB", "throughline_bench_profile_timers")
REDIS = os.environ.get("BENCH_PROFILE_REDIS", "redis://127.0.0.1:6379")
REDIS_CACHE_DB = int(os.environ.get("BENCH_REDIS_CACHE_DB", "12"))
REDIS_BROKER_DB = int(os.environ.get("BENCH_REDIS_BROKER_DB", "13"))
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

from bench.cpu import process_ticks  # noqa: E402 - after sys.path is set

JOURNEYS: dict[str, dict[str, Any]] = {
    "wait": {
        "trigger": {"type": "api"},
        "start": "hold",
        "steps": {
            "hold": {"type": "wait", "duration": {"hours": 1}, "next": "done"},
            "done": {"type": "exit"},
        },
    },
    "message": {
        "trigger": {"type": "api"},
        "start": "hold",
        "steps": {
            "hold": {"type": "wait", "duration": {"hours": 1}, "next": "mail"},
            "mail": {
                "type": "message",
                "channels": ["email"],
                "purpose": "transactional",
                "content": {"email": {"subject": "Hello {{ profile.first_name }}", "body": "Your cart waits."}},
                "next": "done",
            },
            "done": {"type": "exit"},
        },
    },
}


def seed(count: int, journey: str) -> Any:
    """A published journey and `count` customers waiting at its first step, their timers due an
    hour after entry; returns the due time."""
    from django.db import connection
    from django.utils import timezone

    from journeys.services import journey_create, journey_publish

    version = journey_create(key="profile-timers", name="Profile timers", definition=JOURNEYS[journey])
    journey_publish(version=version)
    entered = timezone.now() - timedelta(hours=2)
    due = entered + timedelta(hours=1)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_customer (id, traits, created_at, updated_at) "
            "SELECT md5('c' || i)::uuid, jsonb_build_object('first_name', 'Ada', 'email', 'c' || i || '@example.com'), "
            "%s, %s FROM generate_series(1, %s) AS i",
            [entered, entered, count],
        )
        cursor.execute(
            "INSERT INTO journeys_enrollment (id, journey_id, version_id, customer_id, status, step, visit, "
            "waiting_for, state, entered_at, end_reason, converted, created_at, updated_at) "
            "SELECT md5('e' || i)::uuid, %s, %s, md5('c' || i)::uuid, 'active', 'hold', 1, %s::jsonb, "
            "'{\"visits\": {\"hold\": 1}}'::jsonb, %s, '', false, %s, %s FROM generate_series(1, %s) AS i",
            [
                version.journey_id,
                version.id,
                json.dumps({"kind": "timer", "timer": "wait", "until": due.isoformat()}),
                entered,
                entered,
                entered,
                count,
            ],
        )
        cursor.execute(
            "INSERT INTO journeys_timer (enrollment_id, step, visit, kind, due_at) "
            "SELECT md5('e' || i)::uuid, 'hold', 1, 'wait', %s FROM generate_series(1, %s) AS i",
            [due, count],
        )
        cursor.execute("ANALYZE")
    return due


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="timers due together (default 10000)")
    parser.add_argument("--journey", choices=sorted(JOURNEYS), default="wait")
    parser.add_argument("--batch", type=int, default=None, help="timers per batch (default: the tick's)")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_SECRET_KEY": "bench-only-not-secret",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "REDIS_URL": f"{REDIS}/{REDIS_CACHE_DB}",
            "CELERY_BROKER_URL": f"{REDIS}/{REDIS_BROKER_DB}",
            "LOG_LEVEL": "WARNING",
        }
    )
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True, capture_output=True)

    import django

    django.setup()
    from django.db import connection

    from journeys import services

    due = seed(args.n, args.journey)
    batch = args.batch or services.TICK_BATCH
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    statements: dict[str, int] = {}

    def count_statements(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        head = " ".join(sql.split())[:90]
        statements[head] = statements.get(head, 0) + 1
        return execute(sql, params, many, context)

    # One batch with its statements counted (Django's wrapper does not see BEGIN/COMMIT).
    with connection.execute_wrapper(count_statements):
        first = services.timers_tick(now=due, batch=batch, max_batches=1)
    print(f"SQL statements for one batch of {first} timers:")
    for head, times in statements.items():
        print(f"  {times:5d}  {head}")

    profiler = cProfile.Profile() if args.cprofile else None
    cpu0, pg0, wall0 = time.process_time(), process_ticks(backend), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    fired = services.timers_tick(now=due, batch=batch, max_batches=10**6)
    if profiler is not None:
        profiler.disable()
    cpu, pg, wall = time.process_time() - cpu0, (process_ticks(backend) - pg0) / CLOCK_TICK, time.perf_counter() - wall0
    batches = -(-fired // batch)
    print(
        f"\nfired {fired} timers in {batches} batches of {batch}: wall {wall:.2f} s ({fired / wall:,.0f}/s), "
        f"CPU per timer: python {cpu / fired * 1e6:,.0f} µs + postgres {pg / fired * 1e6:,.0f} µs "
        f"= {(cpu + pg) / fired * 1e6:,.0f} µs (one process: {fired / (cpu + pg):,.0f} timers per CPU-second)"
    )
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
