"""Where a source-facing request's time goes, without HTTP or a load generator in the way.

Calls the WSGI application in-process for N requests against its own database and Redis
databases and reports the CPU each request costs: this Python process (Django, DRF, the
service, psycopg), the PostgreSQL backend serving it, and Redis. CPU time, unlike throughput,
holds still on a machine that other work is also using. With --cprofile it also prints the
functions that take the time.

    .venv/bin/python bench/profile_ingest.py track -n 3000
    .venv/bin/python bench/profile_ingest.py batch -n 200 --cprofile
    .venv/bin/python bench/profile_ingest.py batch -n 200 --schemas enforce
    .venv/bin/python bench/profile_ingest.py session-get -n 3000
    .venv/bin/python bench/profile_ingest.py session-patch -n 3000
    .venv/bin/python bench/profile_ingest.py t -n 3000     # /v1/track's body as a browser sends it
    .venv/bin/python bench/profile_ingest.py b -n 200      # /v1/batch's body as a browser sends it

t and b are what analytics-next sends: to /v1/t and /v1/b, text/plain, writeKey in the body, an
Origin header, no Authorization (so through CORS and the source's origin check).

`--schemas warn|enforce` publishes a schema for every event, page and identify the traffic sends
(bench/traffic.py: SCHEMAS) and sets the source's policy, so validation runs on every message.

It creates (and drops first) the database throughline_bench_profile (BENCH_PROFILE_DB overrides it)
and flushes Redis databases 12 and 13 (BENCH_REDIS_CACHE_DB, BENCH_REDIS_BROKER_DB override them)
of the Redis on port 6379 (BENCH_REDIS_PORT overrides it).
"""

import argparse
import base64
import cProfile
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
# Overridable so two profiling runs do not drop each other's database.
DB_NAME = os.environ.get("BENCH_PROFILE_DB", "throughline_bench_profile")
REDIS_CACHE_DB = int(os.environ.get("BENCH_REDIS_CACHE_DB", "12"))
REDIS_BROKER_DB = int(os.environ.get("BENCH_REDIS_BROKER_DB", "13"))
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
# The browser-shaped kinds and the server kinds whose bodies they send.
BROWSER_SHAPES = {"t": "track", "b": "batch"}
ANALYZE_FROM_CUSTOMERS = 5_000  # see the ANALYZE after the warm-up
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

import orjson  # noqa: E402

from bench.cpu import process_ticks, redis_ticks  # noqa: E402
from bench.traffic import Messages, publish_schemas  # noqa: E402 - after sys.path is set
from bench.wsgi_call import wsgi_call  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["track", "batch", "t", "b", "session-get", "session-patch"])
    parser.add_argument("-n", type=int, default=2000, help="measured requests")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests first (identities get created)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--schemas", choices=["warn", "enforce"], help="validate against published schemas")
    parser.add_argument("--full-stack", action="store_true", help="/v1 through settings.MIDDLEWARE too")
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="requests per second (default: back to back), as one web process sees them",
    )
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--dump", help="with --cprofile: also write the raw profile to this file (for pstats)")
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_SECRET_KEY": "bench-only-not-secret",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_CACHE_DB}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_BROKER_DB}",
            "INGEST_RATE_LIMIT_PER_SECOND": "10000000",
            "LOG_LEVEL": "WARNING",
        }
    )
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    for db in (REDIS_CACHE_DB, REDIS_BROKER_DB):
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "-n", str(db), "flushdb"],
            check=True,
            capture_output=True,
        )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, check=True, capture_output=True)
    key = (
        subprocess.run(
            [*manage, "create_source", "profile-web", "--channel", "web"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from config.core.wsgi import application as source_api_application

    # As the web server calls it (config.wsgi: /v1 through the lean handler), or everything through
    # settings.MIDDLEWARE with --full-stack.
    application: Any = get_wsgi_application() if args.full_stack else source_api_application()
    if args.schemas:
        publish_schemas(args.schemas)
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    messages = Messages(run=f"p{int(time.time())}", people=args.people)
    statuses: dict[str, int] = {}
    session = {"id": "", "etag": ""}

    def request(method: str, path: str, body: bytes, **headers: str) -> tuple[str, dict[str, str], bytes]:
        status, response_headers, content = wsgi_call(application, method, path, body, authorization=auth, **headers)
        statuses[status] = statuses.get(status, 0) + 1
        return status, response_headers, content

    if args.kind.startswith("session"):
        status, headers, content = request("POST", "/v1/sessions", b'{"userId":"profile-1","state":{"cart":[]}}')
        assert status.startswith("201"), (status, content)
        session.update(id=orjson.loads(content)["id"], etag=headers["ETag"])

    def call(body: bytes) -> None:
        if args.kind == "session-get":
            request("GET", f"/v1/sessions/{session['id']}", b"")
        elif args.kind == "session-patch":
            _, headers, _ = request("PATCH", f"/v1/sessions/{session['id']}", body, if_match=session["etag"])
            session["etag"] = headers.get("ETag", session["etag"])
        elif args.kind in BROWSER_SHAPES:
            status, _, _ = wsgi_call(
                application,
                "POST",
                f"/v1/{args.kind}",
                body,
                authorization="",
                content_type="text/plain",
                origin="https://shop.example.com",
            )
            statuses[status] = statuses.get(status, 0) + 1
        else:
            request("POST", "/v1/batch" if args.kind == "batch" else "/v1/track", body)

    def next_body() -> bytes:
        if args.kind == "session-get":
            return b""
        if args.kind == "session-patch":
            return orjson.dumps({"step": messages.rng.randint(1, 9), "cart": [messages.rng.randint(1, 99)]})
        if args.kind in BROWSER_SHAPES:
            return b'{"writeKey":' + orjson.dumps(key) + b"," + messages.body(BROWSER_SHAPES[args.kind], args.batch)[1:]
        return messages.body(args.kind, args.batch)

    for _ in range(args.warmup):
        call(next_body())
    # A database in service has planner statistics that fit its tables. This one was created a
    # minute ago: the plans prepared during the warm-up saw near-empty tables and would scan them
    # as they grow, so ANALYZE makes them replan, once the warm-up has made the tables a fair size
    # (a batch warm-up makes the whole population). Statistics of a few hundred rows are as bad:
    # the planner then hashes or scans a table it thinks tiny while the run grows it tenfold.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM profiles_customer")
        if cursor.fetchone()[0] >= ANALYZE_FROM_CUSTOMERS:
            cursor.execute("ANALYZE")
    bodies = [next_body() for _ in range(args.n)]
    statuses.clear()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    statements: dict[str, int] = {}

    def count_statements(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        head = " ".join(sql.split())[:70]
        statements[head] = statements.get(head, 0) + 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_statements):
        call(bodies[0])
    bodies = bodies[1:]
    args.n -= 1
    print("SQL statements for one request (BEGIN/SAVEPOINT/COMMIT are not seen by Django's wrapper):")
    for head, times in statements.items():
        print(f"  {times} x {head}")
    profiler = cProfile.Profile(time.process_time) if args.cprofile else None  # CPU, not waiting
    pg0, redis0, cpu0, wall0 = process_ticks(backend), redis_ticks(), time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    pause = 1 / args.rate if args.rate else 0
    for body in bodies:
        call(body)
        if pause:
            # Sleeping costs no CPU; what runs in the meantime (the routing dispatcher's thread
            # publishing a chunk per linger) does, as it does in a web process at this rate.
            time.sleep(pause)
    if profiler:
        profiler.disable()
    pg1, redis1, cpu1, wall1 = process_ticks(backend), redis_ticks(), time.process_time(), time.perf_counter()
    events = args.n * (args.batch if args.kind in ("batch", "b") else 1)
    python_ms = (cpu1 - cpu0) * 1000
    pg_ms = (pg1 - pg0) * 1000 / CLOCK_TICK
    redis_ms = (redis1 - redis0) * 1000 / CLOCK_TICK
    print(f"{args.n} {args.kind} requests ({events} events), statuses {statuses}")
    if not args.kind.startswith("session"):
        from profiles.models import Event, QuarantinedMessage

        validated = Event.objects.filter(schema_version__isnull=False).count()
        print(
            f"in the database: {Event.objects.count()} events ({validated} validated against a schema), "
            f"{QuarantinedMessage.objects.count()} quarantined"
        )
    print(
        f"CPU ms per request: python {python_ms / args.n:.3f}, postgres {pg_ms / args.n:.3f}, "
        f"redis {redis_ms / args.n:.3f}; total {(python_ms + pg_ms + redis_ms) / args.n:.3f}"
    )
    if args.kind in ("batch", "b"):
        print(f"CPU us per event: {(python_ms + pg_ms + redis_ms) * 1000 / events:.1f}")
    print(f"wall ms per request {(wall1 - wall0) * 1000 / args.n:.3f}{' (under cProfile)' if profiler else ''}")
    if profiler:
        stats = pstats.Stats(profiler)
        if args.dump:
            stats.dump_stats(args.dump)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
