"""Where routing's time goes: route() in-process, per chunk, without Celery or HTTP timing.

Seeds the demo (the three demo journeys published), ingests events of the journeys bench's mix
through /v1/batch in-process (nothing is dispatched: the events wait on the outbox), then
routes them with `orchestration.routing.route` in chunks of each size asked for, and reports per
chunk size: SQL statements per chunk (they must not grow with the chunk), and CPU per routed
event in this process and in the PostgreSQL backend serving it. CPU time, unlike wall time,
holds still on a machine that other work is also using. With --cprofile it also prints the
functions that take the time at the last chunk size.

    .venv/bin/python bench/profile_routing.py                   # chunks of 1, 20, 200
    .venv/bin/python bench/profile_routing.py --chunks 20 -n 4000 --cprofile
    .venv/bin/python bench/profile_routing.py --chunks 1 --statements

It creates (and drops first) the database throughline_bench_profile_routing (BENCH_PROFILE_DB
overrides it) and flushes Redis databases 10 and 11 (BENCH_REDIS_CACHE_DB, BENCH_REDIS_BROKER_DB).
"""

import argparse
import base64
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = "postgres://postgres@127.0.0.1:5432"
DB_NAME = os.environ.get("BENCH_PROFILE_DB", "throughline_bench_profile_routing")
CACHE_DB = os.environ.get("BENCH_REDIS_CACHE_DB", "10")
BROKER_DB = os.environ.get("BENCH_REDIS_BROKER_DB", "11")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

from bench.cpu import process_ticks  # noqa: E402
from bench.journeys import e2e_bodies  # noqa: E402 - after sys.path is set
from bench.wsgi_call import wsgi_call  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="events routed per chunk size")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 20, 200], help="chunk sizes")
    parser.add_argument("--warmup", type=int, default=1000, help="events routed first, unmeasured")
    parser.add_argument("--people", type=int, default=20_000, help="customers the events are spread over")
    parser.add_argument("--cprofile", action="store_true", help="profile the last chunk size")
    parser.add_argument("--statements", action="store_true", help="list the SQL of one chunk per size")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_SECRET_KEY": "bench-only-not-secret",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{CACHE_DB}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{BROKER_DB}",
            "INGEST_RATE_LIMIT_PER_SECOND": "10000000",
            "LOG_LEVEL": "WARNING",
            "JOURNEYS_FALLBACK_TIMEZONE": "UTC",
            # Chunks of exactly the size asked for: no backlog comes along.
            "ROUTING_CLAIM_BACKLOG": "0",
        }
    )
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    for db in (CACHE_DB, BROKER_DB):
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", db, "flushdb"], check=True, capture_output=True)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, check=True, capture_output=True)
    seeded = subprocess.run([*manage, "seed_demo"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    key = next(line.split()[1] for line in seeded.splitlines() if line.split()[:1] == ["demo-web"])

    import django

    django.setup()
    from django.db import connection

    from config.core.wsgi import application as source_api_application
    from orchestration import routing
    from orchestration.routing import route
    from profiles import contracts
    from profiles.models import EventOutbox

    # Nothing goes to Celery: this process routes the events itself.
    contracts._accepted_listeners.clear()
    application: Any = source_api_application()
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def post(body: bytes) -> None:
        status, _, content = wsgi_call(application, "POST", "/v1/batch", body, authorization=auth)
        assert status.startswith("200"), (status, content)

    def ingest(run: str, events: int) -> list[int]:
        for body in e2e_bodies(run, events, args.people):
            post(body)
        ids = sorted(EventOutbox.objects.values_list("event_id", flat=True))
        assert len(ids) >= events, (len(ids), events)
        return ids

    def route_all(ids: list[int], size: int) -> int:
        """Route `ids`, then whatever routing itself put on the outbox (Session Started, Segment
        Entered, journeys' own calls), as the worker would, until the outbox is empty."""
        routed = 0
        while ids:
            for start in range(0, len(ids), size):
                routed += route(ids[start : start + size])
            ids = sorted(EventOutbox.objects.values_list("event_id", flat=True))
        return routed

    # CPU per handler: each registered handler wrapped in a timer (this process only).
    spent: dict[str, float] = {}

    def timed(handler: Any) -> Any:
        name = f"{handler.__module__}.{handler.__name__}"

        def run_timed(events: Any) -> None:
            start = time.process_time()
            try:
                handler(events)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - start

        return run_timed

    routing._handlers[:] = [timed(h) for h in routing.handlers()]
    run = f"pr{int(time.time())}"
    statements: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(" ".join(sql.split())[:110])
        return execute(sql, params, many, context)

    route_all(ingest(f"{run}w", args.warmup), 20)
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    print(f"{args.n} events per chunk size, journeys bench mix, {args.people} people, demo journeys published")
    print("Per routed event (routing's own events included, as the worker routes them):")
    print(f"{'chunk':>6} {'SQL/chunk':>10} {'routed':>7} {'py µs/event':>12} {'pg µs/event':>12} {'wall µs/event':>14}")
    for i, size in enumerate(args.chunks):
        ids = ingest(f"{run}-{size}", args.n)
        statements.clear()

        # Statements of the second chunk (the first may load per-process caches).
        with connection.execute_wrapper(count):
            route(ids[:size])
            statements.clear()
            route(ids[size : 2 * size])
        per_chunk = list(statements)
        rest = ids[2 * size :]
        profiler = cProfile.Profile(time.process_time) if args.cprofile and i == len(args.chunks) - 1 else None
        spent.clear()
        pg0, cpu0, wall0 = process_ticks(backend), time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        routed = route_all(rest, size)
        if profiler:
            profiler.disable()
        pg1, cpu1, wall1 = process_ticks(backend), time.process_time(), time.perf_counter()
        assert routed >= len(rest), (routed, len(rest))
        py_us = (cpu1 - cpu0) * 1e6 / routed
        pg_us = (pg1 - pg0) * 1e6 / CLOCK_TICK / routed
        wall_us = (wall1 - wall0) * 1e6 / routed
        print(f"{size:>6} {len(per_chunk):>10} {routed:>7} {py_us:>12.0f} {pg_us:>12.0f} {wall_us:>14.0f}")
        for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
            print(f"         {seconds * 1e6 / routed:>8.0f} µs/event  {name}")
        if args.statements:
            for sql in per_chunk:
                print(f"         {sql}")
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(str(ROOT), args.top)
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
