"""Where a POST /v1/decide request's time goes, without HTTP or a load generator in the way.

Calls the WSGI application in-process (the lean /v1 handler, as the web server calls it) for N decide
requests against its own database and Redis databases, the demo seeded (the VIP routing journey
on placement `support_entry`) and a population identified (every tenth customer a VIP, as
bench/decide.py does), and reports the CPU each request costs: this Python process, the
PostgreSQL backends serving it, and Redis. It prints the SQL statements and Redis commands of one
request, and with --cprofile the functions that take the time.

    .venv/bin/python bench/profile_decide.py -n 3000
    .venv/bin/python bench/profile_decide.py -n 2000 --cprofile
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python bench/profile_decide.py -n 500 --callgrind
      (instructions of the measured requests only, the same whatever else the machine runs:
      callgrind_annotate callgrind.out.<pid> | head)

It creates (and drops first) the database throughline_bench_profile_decide (BENCH_PROFILE_DB
overrides it) and flushes the Redis databases BENCH_REDIS_CACHE_DB / BENCH_REDIS_BROKER_DB
(default 0 and 1).
"""

import argparse
import base64
import cProfile
import os
import pstats
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = "postgres://postgres@127.0.0.1:5432"
DB_NAME = os.environ.get("BENCH_PROFILE_DB", "throughline_bench_profile_decide")
CACHE_DB = int(os.environ.get("BENCH_REDIS_CACHE_DB", "0"))
BROKER_DB = int(os.environ.get("BENCH_REDIS_BROKER_DB", "1"))
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
VIP_EVERY = 10

import orjson  # noqa: E402

from bench.cpu import process_ticks, redis_ticks  # noqa: E402
from bench.wsgi_call import wsgi_call  # noqa: E402 - after sys.path is set


def backends_ticks(database: str) -> int:
    """CPU of every PostgreSQL backend connected to the database (the service may use more than one)."""
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
            )
        ]
    total = 0
    for pid in pids:
        try:
            total += process_ticks(pid)
        except OSError:
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="measured requests")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests first")
    parser.add_argument("--people", type=int, default=2000, help="customers identified before the run")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="instrument only the measured requests when run under valgrind --tool=callgrind --instr-atstart=no",
    )
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
        }
    )
    if args.callgrind:
        # Under valgrind a request takes longer than the recorder's linger, so every decision
        # would be written alone: the rows are held and written in one COPY at the end of the
        # measured requests instead (counted), as they are at the rates the bench offers.
        os.environ["DECIDE_RECORD_LINGER_MS"] = "600000"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    for db in (CACHE_DB, BROKER_DB):
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(db), "flushdb"], check=True, capture_output=True)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, check=True, capture_output=True)
    seeded = subprocess.run([*manage, "seed_demo"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    key = next(line.split()[1] for line in seeded.splitlines() if line.split()[:1] == ["demo-web"])

    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from config.core import redis as tl_redis
    from config.core.wsgi import application as source_api_application
    from journeys.models import Segment, SegmentMembership
    from profiles.models import Customer, Identity

    application: Any = source_api_application()
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    statuses: dict[str, int] = {}

    # The population, written directly (ingestion is not what this measures): user-1..N, every
    # VIP_EVERY-th with trait vip, as bench/decide.py identifies them through /v1/batch.
    customers = [Customer(traits={"vip": p % VIP_EVERY == 0, "name": f"Person {p}"}) for p in range(1, args.people + 1)]
    Customer.objects.bulk_create(customers, batch_size=1000)
    Identity.objects.bulk_create(
        [Identity(customer=c, kind="user_id", value=f"user-{p}") for p, c in enumerate(customers, start=1)],
        batch_size=1000,
    )
    vip = Segment.objects.get(key="vip")
    SegmentMembership.objects.bulk_create(
        [
            SegmentMembership(segment=vip, customer_id=c.id, entered_at=timezone.now())
            for p, c in enumerate(customers, start=1)
            if p % VIP_EVERY == 0
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    def request(body: bytes, path: str = "/v1/decide") -> tuple[str, bytes]:
        status, _, content = wsgi_call(application, "POST", path, body, authorization=auth)
        statuses[status] = statuses.get(status, 0) + 1
        return status, content

    rng = random.Random(6)
    pages = ["/help", "/orders", "/account", "/checkout"]

    def body() -> bytes:
        p = rng.randint(1, args.people)
        return orjson.dumps(
            {
                "userId": f"user-{p}",
                "channel": "web",
                "placement": "support_entry",
                "context": {"page": pages[p % len(pages)], "locale": "en-GB"},
            }
        )

    for _ in range(args.warmup):
        request(body())
    status, content = request(body())
    assert status.startswith("200"), (status, content)
    print("an answer:", content.decode())

    statements: dict[str, int] = {}

    def count_statements(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        head = " ".join(sql.split())[:90]
        statements[head] = statements.get(head, 0) + 1
        return execute(sql, params, many, context)

    # Counted on the connection (config.core.redis.run_script sends EVALSHA there, not through
    # the client's execute_command); a pipeline is one send_packed_command, its commands listed.
    commands: list[str] = []
    client = tl_redis.client()
    connection_class = client.connection_pool.connection_class
    send_command = connection_class.send_command

    def count_command(self: Any, *command: Any, **options: Any) -> Any:
        commands.append(str(command[0]))
        return send_command(self, *command, **options)

    connection_class.send_command = count_command
    pipeline_class = type(client.pipeline())
    pipeline_execute = pipeline_class.execute

    def count_pipeline(self: Any, *a: Any, **kw: Any) -> Any:
        commands.append("PIPELINE[" + ",".join(str(c[0][0]) for c in self.command_stack) + "]")
        return pipeline_execute(self, *a, **kw)

    pipeline_class.execute = count_pipeline  # type: ignore[method-assign]
    with connection.execute_wrapper(count_statements):
        request(body())
    connection_class.send_command = send_command
    pipeline_class.execute = pipeline_execute  # type: ignore[method-assign]
    print("SQL statements for one request (BEGIN/COMMIT are not seen by Django's wrapper):")
    for head, times in statements.items():
        print(f"  {times} x {head}")
    print(f"Redis round trips for one request: {len(commands)} {commands}")

    # The same process's cost for the bench's no-op DRF view (through the full middleware stack):
    # what any request costs here before decide does anything, taken just before, under the
    # same machine load.
    bodies = [body() for _ in range(args.n)]
    for _ in range(200):
        request(b"{}", "/bench/noop")
    if args.callgrind:  # the no-op's instructions go to a dump of their own (its name ends .1)
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    noop0 = time.process_time()
    for _ in range(args.n):
        request(b"{}", "/bench/noop")
    noop_ms = (time.process_time() - noop0) * 1000 / args.n
    if args.callgrind:
        subprocess.run(["callgrind_control", "--dump=noop", str(os.getpid())], check=True, capture_output=True)
    statuses.clear()
    profiler = cProfile.Profile(time.process_time) if args.cprofile else None  # CPU, not waiting
    pg0, redis0, cpu0, wall0 = backends_ticks(DB_NAME), redis_ticks(), time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for payload in bodies:
        request(payload)
    if args.callgrind:
        from journeys.decide_recorder import recorder

        recorder.flush()
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    if profiler:
        profiler.disable()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    pg1, redis1 = backends_ticks(DB_NAME), redis_ticks()
    python_ms = (cpu1 - cpu0) * 1000
    pg_ms = (pg1 - pg0) * 1000 / CLOCK_TICK
    redis_ms = (redis1 - redis0) * 1000 / CLOCK_TICK
    print(f"{args.n} decide requests, statuses {statuses}")
    print(
        f"CPU ms per request: python {python_ms / args.n:.3f}, postgres {pg_ms / args.n:.3f}, "
        f"redis {redis_ms / args.n:.3f}; total {(python_ms + pg_ms + redis_ms) / args.n:.3f}"
    )
    print(f"wall ms per request {(wall1 - wall0) * 1000 / args.n:.3f}{' (under cProfile)' if profiler else ''}")
    print(f"the no-op DRF view in this process: python {noop_ms:.3f} ms per request")
    from journeys.decide_recorder import recorder
    from journeys.models import Decision

    recorder.flush()
    answered = args.warmup + 2 + args.n
    print(f"decisions recorded: {Decision.objects.count()} of {answered} answered")
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
