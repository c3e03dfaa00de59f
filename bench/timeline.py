"""`make bench-timeline`: latency of GET /api/v1/customers/{id}/timeline for a big profile.

Seeds its own database (throughline_bench_timeline) with one customer holding 10,000 events on
five channels, sessions started and ended, consent changes and two merged profiles, among
100,000 events of 1,000 other customers (so the indexes, not an empty table, are measured).
Serves it as in production (granian as `manage.py serve` runs it, production settings, PostgreSQL and
Redis for the token throttle), then walks every page of the timeline over HTTP keep-alive:

- sequential: one client, every page twice (about 400 requests);
- concurrent: four clients walking every page at once, for the latency under contention.

Prints p50/p90/p99/max per run, as the client saw them and as the server's access log timed them
inside the server (the difference is time spent waiting for a CPU), the plan PostgreSQL uses
for the events of a deep page, and the machine's load (it is shared with other agents' test
runs), and writes
bench/results/timeline-<timestamp>.json. Target: p99 at most 50 ms.
"""

import argparse
import contextlib
import http.client
import io
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.core.server import DEFAULT_THREADS, web_argv  # noqa: E402 - after the path is set

PYTHON = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"
DB_NAME = "throughline_bench_timeline"
REDIS_CACHE_DB = 12
REDIS_BROKER_DB = 13
RESULTS = ROOT / "bench" / "results"
TARGET_P99_MS = 50.0
CHANNELS = ("web", "mobile", "email", "sms", "pos")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "bench-only-not-secret",
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_CACHE_DB}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The throttle is still checked on every request (its Redis round trip is part of what
        # is measured), above what the bench sends so it never refuses.
        "API_RATE_LIMIT_PER_SECOND": "1000000",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def reset_stores() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    for db in (REDIS_CACHE_DB, REDIS_BROKER_DB):
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(db), "flushdb"], check=True, capture_output=True)


# --- Seeding (in this process, through the project's own services where they exist) -----------


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def copy_events(rows: list[tuple[Any, ...]]) -> None:
    columns = (
        "source_id, message_id, type, name, customer_id, channel, user_id, anonymous_id, "
        "timestamp, received_at, properties, context, extra"
    )
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(str(v) for v in row) + "\n")
    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        with conn.cursor() as cursor, cursor.copy(f"COPY profiles_event ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.commit()


def seed(events: int, noise_events: int, noise_customers: int) -> dict[str, Any]:
    from django.core.management import call_command

    from config.core.auth import api_token_create
    from profiles.merging import customer_merge
    from profiles.models import Customer, Identity
    from profiles.privacy.conventions import ConsentChoice
    from profiles.privacy.services import consent_set
    from profiles.services import source_create
    from sessions.models import SessionRecord

    call_command("migrate", verbosity=0)
    sources = {channel: source_create(name=f"bench-{channel}", channel=channel)[0] for channel in CHANNELS}
    _, token = api_token_create(name="bench-timeline")
    rng = random.Random(42)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    span = timedelta(days=60).total_seconds()

    person = Customer.objects.create(traits={"name": "Bench Person", "plan": "gold"})
    Identity.objects.create(kind="user_id", value="bench-user", customer=person)
    Identity.objects.create(kind="email", value="bench@example.com", customer=person)
    others = Customer.objects.bulk_create(Customer(traits={}) for _ in range(noise_customers))

    def event_row(customer_id: Any, i: int, prefix: str) -> tuple[Any, ...]:
        channel = rng.choice(CHANNELS)
        at = start + timedelta(seconds=rng.random() * span)
        properties = json.dumps({"sku": f"SKU-{i % 500}", "price": 19.99, "currency": "EUR"})
        context = json.dumps({"ip": "10.1.2.3", "library": {"name": "analytics.js", "version": "5.2.0"}})
        return (
            sources[channel].id, f"{prefix}-{i}", "track", rng.choice(["Product Viewed", "Order Completed", "Opened"]),
            customer_id, channel, "bench-user", "", at.isoformat(), at.isoformat(), properties, context, "{}",
        )  # fmt: skip

    log(f"seeding {events} events for the customer and {noise_events} for {noise_customers} others")
    copy_events([event_row(person.id, i, "p") for i in range(events)])
    copy_events([event_row(others[i % noise_customers].id, i, "n") for i in range(noise_events)])

    sessions = []
    for i in range(40):
        started = start + timedelta(seconds=rng.random() * span)
        ended = started + timedelta(minutes=rng.randint(1, 90)) if i % 8 else None
        channel = rng.choice(CHANNELS)
        # Orchestration's session records: the timeline's session entries come from them.
        sessions.append(
            SessionRecord(
                customer=person,
                channel=channel,
                started_channel=channel,
                channels=[channel],
                device="bench",
                started_at=started,
                last_seen_at=ended or started,
                ended_at=ended,
                end_reason="ended" if ended else "",
            )
        )
    SessionRecord.objects.bulk_create(sessions)
    for i in range(20):
        consent_set(
            customer_id=person.id,
            choices=[
                ConsentChoice("marketing", rng.choice(["email", "sms", "push"]), rng.choice(["granted", "denied"]))
            ],
            origin="api",
            actor="token:bench-timeline",
            changed_at=start + timedelta(days=3 * i),
        )
    for n in range(2):
        merged = Customer.objects.create(traits={"device": f"tablet-{n}"})
        copy_events([event_row(merged.id, i, f"m{n}") for i in range(5)])
        customer_merge(customer_ids=[person.id, merged.id], reason="bench", actor="bench")
    with psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"customer_id": str(person.id), "token": token}


def explain_deep_page(customer_id: str) -> list[str]:
    """The plan of the statement a page near the end of the timeline runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from profiles.customer360.timeline import customer_timeline
    from profiles.models import Customer, Event

    customer = Customer.objects.get(id=customer_id)
    oldest = Event.objects.filter(customer=customer).order_by("timestamp", "id")[100]
    position = (oldest.timestamp, "event", f"{oldest.id:020d}")
    with CaptureQueriesContext(connection) as captured:
        customer_timeline(customer_id=customer.id, before=position, limit=50)
    events_sql = next(q["sql"] for q in captured.captured_queries if "profiles_event" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + events_sql)
        return [row[0] for row in cursor.fetchall()]


# --- Serving and measuring -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_web(env: dict[str, str], port: int, workers: int, threads: int, logdir: Path) -> subprocess.Popen[bytes]:
    """The web server as `manage.py serve` runs it, with its access log on: each request's time
    inside the server, to tell the service's own time from the time the client waited on a
    machine shared with other work. granian writes access lines to its log (stdout)."""
    out = (logdir / "web.log").open("wb")
    argv = web_argv(PYTHON, host="127.0.0.1", port=port, workers=workers, threads=threads)
    argv[-1:-1] = ["--access-log", "--access-log-fmt", "ACCESS %(dt_ms).3f %(status)d %(path)s"]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the web server exited at start; see {logdir / 'web.log'}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        time.sleep(0.2)
    raise SystemExit("the web server did not answer within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def walk(port: int, path: str, token: str, page_size: int, latencies: list[float], pages: list[int]) -> None:
    """Follow `next` from the first page to the last on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
    target: str | None = f"{path}?page_size={page_size}"
    count = 0
    while target:
        started = time.perf_counter()
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"GET {target}: {response.status} {body[:200]!r}")
        data = json.loads(body)
        count += len(data["results"])
        target = None
        if data["next"]:
            parsed = urllib.parse.urlsplit(data["next"])
            target = f"{parsed.path}?{parsed.query}"
    pages.append(count)
    conn.close()


def server_times(logdir: Path, path: str, skip: int) -> list[float]:
    """Milliseconds inside the web server for each timeline request after the first `skip`."""
    times = []
    for line in (logdir / "web.log").read_text().splitlines():
        _, marker, rest = line.partition("ACCESS ")
        if not marker:
            continue
        millis, status, url = rest.split(" ", 2)
        if url == path and status == "200":
            times.append(float(millis))
    return times[skip:]


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(web_pgid: int) -> dict[str, float]:
    """CPU used so far by the web server (its process group) and by the PostgreSQL
    backends serving the bench database: what a request costs, whatever else the machine runs."""
    used = {"web": 0.0, "postgres": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
        if int(fields[2]) == web_pgid:
            used["web"] += seconds
        elif cmdline.startswith("postgres: ") and DB_NAME in cmdline:
            used["postgres"] += seconds
    return used


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {
        "requests": len(ordered),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "postgresql": pg_version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--noise-events", type=int, default=100_000)
    parser.add_argument("--noise-customers", type=int, default=1_000)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--passes", type=int, default=2, help="Sequential walks over every page.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent walkers in the second run.")
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes (as served: 2)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads per web worker")
    args = parser.parse_args()

    env = bench_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-timeline-{stamp}-{uuid.uuid4().hex[:6]}"
    logdir.mkdir(parents=True)
    load_start = os.getloadavg()
    log(f"resetting {DB_NAME} and Redis databases {REDIS_CACHE_DB}/{REDIS_BROKER_DB}")
    reset_stores()
    setup_django(env)
    seeded = seed(args.events, args.noise_events, args.noise_customers)
    plan = explain_deep_page(seeded["customer_id"])
    from django.db import connections

    connections.close_all()

    port = free_port()
    server = start_web(env, port, args.workers, args.threads, logdir)
    path = f"/api/v1/customers/{seeded['customer_id']}/timeline"
    try:
        walk(port, path, seeded["token"], args.page_size, [], [])  # warm-up: connections, caches
        sequential: list[float] = []
        entries: list[int] = []
        cpu_before = cpu_seconds(server.pid)
        for _ in range(args.passes):
            walk(port, path, seeded["token"], args.page_size, sequential, entries)
        cpu_after = cpu_seconds(server.pid)
        cpu_ms = {role: round((cpu_after[role] - cpu_before[role]) * 1000 / len(sequential), 2) for role in cpu_before}
        concurrent: list[float] = []
        threads = [
            threading.Thread(target=walk, args=(port, path, seeded["token"], args.page_size, concurrent, entries))
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop(server)
    load_end = os.getloadavg()
    # The log is in the order requests finished: the warm-up walk, the sequential walks, then
    # the concurrent ones.
    inside = server_times(logdir, path, skip=len(sequential) // args.passes)

    results = {
        "when": stamp,
        "machine": machine(),
        "loadavg_1m_start_end": [round(load_start[0], 2), round(load_end[0], 2)],
        "profile": {
            "events": args.events,
            "timeline_entries": entries[0],
            "other_events": args.noise_events,
            "other_customers": args.noise_customers,
        },
        "server": f"granian, {args.workers} workers x {args.threads} threads, config.settings.production",
        "page_size": args.page_size,
        "cpu_ms_per_request": cpu_ms,
        "sequential": summary(sequential),
        "sequential_inside_server": summary(inside[: len(sequential)]),
        f"concurrent_{args.clients}_clients": summary(concurrent),
        f"concurrent_{args.clients}_clients_inside_server": summary(inside[len(sequential) :]),
        "deep_page_events_plan": plan,
        "target_p99_ms": TARGET_P99_MS,
    }
    out = RESULTS / f"timeline-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    log(f"profile: {entries[0]} timeline entries, pages of {args.page_size}")
    log("events query of a deep page:\n    " + "\n    ".join(plan))
    names = ("sequential", f"concurrent_{args.clients}_clients")
    for name in [n + suffix for n in names for suffix in ("", "_inside_server")]:
        figures = results[name]
        verdict = "OK" if figures["p99_ms"] <= TARGET_P99_MS else "OVER TARGET"
        log(
            f"{name}: {figures['requests']} requests, p50 {figures['p50_ms']} ms, p90 {figures['p90_ms']} ms, "
            f"p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms  [{verdict}: p99 <= {TARGET_P99_MS} ms]"
        )
    log(f"CPU per request (sequential run): web {cpu_ms['web']} ms, PostgreSQL {cpu_ms['postgres']} ms")
    log(f"load average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}, on {os.cpu_count()} cores")
    log(f"results: {out}")


if __name__ == "__main__":
    main()
