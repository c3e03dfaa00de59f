"""`make bench-ingest`: ingestion throughput and latency beside the machine's own ceilings.

Runs the service as in production (the web server as `manage.py serve` runs it, production settings,
PostgreSQL, Redis, one Celery worker on the routing queue) on its own database and Redis databases,
drives it from a separate load process (wrk, or a Python generator when wrk cannot be had), and
prints:

- the ceilings, measured in the same run: PostgreSQL COPY rows/s into a scratch table shaped and
  indexed like profiles_event, and the req/s of a no-op DRF view served by the same web server;
- /v1/batch with 100 events per request: events/s durably stored (rows counted in
  profiles_event afterwards), and that the routing worker drained the outbox;
- /v1/track: saturation req/s, then p50/p99 latency at 70% of that rate under open-loop load;
- browser-shaped load (`--only browser`): /v1/track beside /v1/t and /v1/batch beside /v1/b, at
  the same fixed rates, in alternating rounds; /v1/t and /v1/b sent as analytics-next sends them
  (text/plain, writeKey in the body, an Origin header, so through CORS and the origin check); web
  CPU per event of each, and the browser paths' cost beside the server paths' (the target: at
  most 10% more).

`--schemas enforce` (or `warn`) publishes a schema for every event, page and identify the traffic
sends (bench/traffic.py: SCHEMAS) and sets the source's policy before the loads, so every message
is validated: the issue's "batch target with schemas active".

Results go to bench/results/ingest-<timestamp>.json. Options: `bench/ingest.py --help`.
"""

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.core.server import DEFAULT_THREADS, web_argv  # noqa: E402 - after the path is set

PYTHON = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"
# Overridable so a smoke run does not drop the database a recorded run is using.
DB_NAME = os.environ.get("BENCH_DB", "throughline_bench")
REDIS_CACHE_DB = int(os.environ.get("BENCH_REDIS_CACHE_DB", "10"))
REDIS_BROKER_DB = int(os.environ.get("BENCH_REDIS_BROKER_DB", "11"))
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
LUA = ROOT / "bench" / "load.lua"
RESULTS = ROOT / "bench" / "results"

TARGET_BATCH_EVENTS = 20_000
TARGET_BATCH_COPY_RATIO = 0.25
TARGET_TRACK_RPS = 2_000
TARGET_TRACK_NOOP_RATIO = 0.5
TARGET_TRACK_P99_MS = 25.0
TARGET_BROWSER_CPU_RATIO = 1.10
# The browser-shaped comparison runs each path at the same fixed rate, well below saturation, so
# the CPU per event compares the paths and not how a saturated server queues.
BROWSER_SINGLE_RPS = 300
BROWSER_BATCH_RPS = 6
BROWSER_ROUNDS = 3


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    generator: str
    p95_ms: float = -1.0  # older load summaries had no p95

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- The machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        durability = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "wal_level", "shared_buffers", "max_wal_size")
        }
    redis_version = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "info", "server"], capture_output=True, text=True, check=False
    ).stdout
    redis_version = next(
        (ln.split(":", 1)[1].strip() for ln in redis_version.splitlines() if "redis_version" in ln), ""
    )
    load1, load5, _ = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": os_name,
        "python": platform.python_version(),
        "postgresql": pg_version,
        "postgresql_durability": durability,
        "redis": redis_version,
        "loadavg_at_start": [round(load1, 2), round(load5, 2)],
    }


# --- Services --------------------------------------------------------------------------------


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_SECRET_KEY": "bench-only-not-secret",
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_CACHE_DB}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/{REDIS_BROKER_DB}",
        "LOG_LEVEL": "WARNING",
        # The per-source limit is still checked on every request (the Redis round trip is part of
        # what is measured); it is set above what one source can send here so it never refuses.
        "INGEST_RATE_LIMIT_PER_SECOND": "10000000",
        "PYTHONUNBUFFERED": "1",
    }


def reset_stores() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    for db in (REDIS_CACHE_DB, REDIS_BROKER_DB):
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "-n", str(db), "flushdb"],
            check=True,
            capture_output=True,
        )


def manage(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Services:
    """The web server and one Celery worker, in their own process groups, stopped on exit."""

    def __init__(self, env: dict[str, str], args: argparse.Namespace, logdir: Path):
        self.env = env
        self.args = args
        self.logdir = logdir
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def web_argv(self) -> list[str]:
        """The web server as `manage.py serve` runs it (config/core/server.py)."""
        return web_argv(PYTHON, host="127.0.0.1", port=self.port, workers=self.args.workers, threads=self.args.threads)

    def celery_argv(self) -> list[str]:
        return [
            PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "routing",
            "--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    def start(self) -> None:
        for name, argv in (("web", self.web_argv()), ("celery", self.celery_argv())):
            out = (self.logdir / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SystemExit(f"{name} exited at start; see {self.logdir / (name + '.log')}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/bench/noop", timeout=1) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise SystemExit("the web server did not answer within 60 s")

    @property
    def groups(self) -> dict[str, int]:
        """Process groups by role (each was started in a session of its own)."""
        return {"web": self.processes["web"].pid, "worker": self.processes["celery"].pid}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


# --- Ceiling 1: COPY -------------------------------------------------------------------------


def copy_ceiling(rows: int) -> dict[str, Any]:
    """COPY `rows` event-like rows into a scratch copy of profiles_event (same columns, defaults,
    indexes and unique constraint; no foreign keys, which LIKE does not copy)."""
    source_id = uuid.uuid4()
    customers = [uuid.uuid4() for _ in range(5000)]
    rng = random.Random(7)
    buffer = io.StringIO()
    for i in range(rows):
        properties = json.dumps(
            {"sku": f"SKU-{i % 5000}", "price": 19.99, "currency": "EUR", "category": "shoes", "quantity": 1}
        )
        context = json.dumps(
            {
                "ip": "10.1.2.3",
                "locale": "en-GB",
                "library": {"name": "analytics.js", "version": "5.2.0"},
                "page": {"path": "/pricing", "url": "https://shop.example.com/pricing"},
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            }
        )
        ts = f"2026-11-23 10:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}+00"
        fields = [
            str(source_id), f"copy-{i}", "track", "Product Viewed", str(rng.choice(customers)), "web",
            f"user-{i % 20000}", f"anon-{i % 20000}", ts, ts, ts, ts, properties, context, "{}",
        ]  # fmt: skip
        buffer.write("\t".join(f.replace("\\", "\\\\") if f != "\\N" else f for f in fields) + "\n")
    data = buffer.getvalue().encode()
    columns = (
        "source_id, message_id, type, name, customer_id, channel, user_id, anonymous_id, "
        "timestamp, original_timestamp, sent_at, received_at, properties, context, extra"
    )
    with psycopg.connect(f"{PG}/{DB_NAME}") as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_event")
        conn.execute("CREATE TABLE bench_copy_event (LIKE profiles_event INCLUDING ALL)")
        indexes = [
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'bench_copy_event' ORDER BY indexname"
            )
        ]
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY bench_copy_event ({columns}) FROM STDIN") as copy:
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        conn.commit()
        elapsed = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM bench_copy_event").fetchone()[0]  # type: ignore[index]
        conn.execute("DROP TABLE bench_copy_event")
        conn.commit()
    return {"rows": stored, "seconds": round(elapsed, 3), "rows_per_s": round(stored / elapsed), "indexes": indexes}


# --- Load generation -------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing it with apt-get")
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True, timeout=300)
        path = shutil.which("wrk")
    if not path:
        log("wrk could not be installed: falling back to the Python load generator (bench/loadgen.py)")
    return path


class Load:
    def __init__(self, url: str, write_key: str, wrk: str | None, logdir: Path):
        self.url = url
        self.write_key = write_key
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self.wrk = wrk
        self.logdir = logdir
        self.run_id = uuid.uuid4().hex[:8]
        self.seq = 0
        self.prefix = ""

    def run(self, kind: str, *, seconds: float, connections: int, rate: float = 0.0, batch: int = 100) -> LoadResult:
        """Closed loop when rate is 0; otherwise open loop at `rate` requests/s in all."""
        self.seq += 1
        self.prefix = f"{self.run_id}{self.seq}"
        out = self.logdir / f"load-{self.seq}-{kind}.json"
        env = {
            **os.environ,
            "BENCH_KIND": kind,
            "BENCH_AUTH": self.auth,
            "BENCH_WRITE_KEY": self.write_key,
            "BENCH_RUN": self.prefix,
            "BENCH_BATCH": str(batch),
            "BENCH_RATE": str(rate / connections if rate else 0),
            "BENCH_OUT": str(out),
        }
        if self.wrk:
            # Open loop needs one connection per thread; closed loop needs one thread at these rates.
            threads = connections if rate else 1
            argv = [
                self.wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                "--timeout", "10s", "-s", str(LUA), self.url,
            ]  # fmt: skip
            generator = "wrk"
        else:
            argv = [
                PYTHON, str(ROOT / "bench" / "loadgen.py"), "--url", self.url, "--seconds", str(seconds),
                "--connections", str(connections),
            ]  # fmt: skip
            generator = "python"
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=seconds + 120)
        data = json.loads(out.read_text())
        latency = data["open_loop_latency_us"] if rate else data["latency_us"]
        return LoadResult(
            requests=data["requests"],
            duration_s=data["duration_us"] / 1e6,
            errors=data["errors"],
            p50_ms=latency["p50"] / 1000,
            p90_ms=latency["p90"] / 1000,
            p99_ms=latency["p99"] / 1000,
            max_ms=latency["max"] / 1000,
            generator=generator,
            p95_ms=latency.get("p95", -1000) / 1000,
        )


# --- Measurements ----------------------------------------------------------------------------


def count(conn: psycopg.Connection[Any], table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def routed_from(conn: psycopg.Connection[Any], run: str) -> int:
    """Events of one load run that the routing worker has routed (it logs each once)."""
    row = conn.execute(
        "SELECT count(DISTINCT r.event_id) FROM orchestration_routelog r JOIN profiles_event e ON e.id = r.event_id "
        "WHERE e.message_id LIKE %s",
        [f"{run}-%"],
    ).fetchone()
    return int(row[0])  # type: ignore[index]


def stored_from(conn: psycopg.Connection[Any], run: str) -> int:
    """Events of one load run (its messageIds start with the run's prefix) that are committed.

    Counted by messageId, not by time or table size: routing handlers write events of their own
    into profiles_event, and a warm-up's last requests finish inside the next window."""
    row = conn.execute("SELECT count(*) FROM profiles_event WHERE message_id LIKE %s", [f"{run}-%"]).fetchone()
    return int(row[0])  # type: ignore[index]


def analyze(conn: psycopg.Connection[Any]) -> None:
    """Planner statistics, as a database in service has them. This one was created a minute ago:
    without this, the statements the web processes prepared during the warm-up keep plans made for
    near-empty tables (sequential scans of customers and identities) until autovacuum's first
    ANALYZE, which comes at some point of the measured load or after it. ANALYZE makes them replan."""
    conn.execute("ANALYZE")


def wait_drained(conn: psycopg.Connection[Any], timeout: float) -> float | None:
    """Seconds until the routing outbox is empty, or None if it is not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if count(conn, "profiles_eventoutbox") == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PG_BACKGROUND = ("walwriter", "checkpointer", "background writer", "autovacuum", "logical replication")


def process_cpu(groups: dict[str, int]) -> dict[int, tuple[str, int]]:
    """CPU ticks used so far by each process this run cares about, with its role.

    web and worker are the web server's and Celery's process groups; postgres is the backends serving
    the bench database; postgres-shared (WAL writer, checkpointer...) and redis serve the other
    users of this machine too.
    """
    by_group = {pgid: role for role, pgid in groups.items()}
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        pgid = int(fields[2])
        role = by_group.get(pgid)
        if role is None and cmdline.startswith("postgres: "):
            if DB_NAME in cmdline:
                role = "postgres"
            elif any(name in cmdline for name in PG_BACKGROUND):
                role = "postgres-shared"
        if role is None and cmdline.startswith("redis-server"):
            role = "redis"
        if role is not None:
            found[int(entry.name)] = (role, ticks)
    return found


@contextlib.contextmanager
def cpu_usage(groups: dict[str, int]) -> Iterator[dict[str, Any]]:
    """CPU used while the block ran: the machine's busy share (all processes, from /proc/stat)
    and CPU-seconds per role (web, worker, postgres, redis, load generator)."""

    def machine_sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    result: dict[str, Any] = {}
    busy0, total0 = machine_sample()
    procs0 = process_cpu(groups)
    children0 = os.times()
    yield result
    children1 = os.times()
    procs1 = process_cpu(groups)
    busy1, total1 = machine_sample()
    result["machine_busy"] = round((busy1 - busy0) / max(1, total1 - total0), 2)
    seconds: dict[str, float] = {}
    for pid, (role, ticks) in procs1.items():
        seconds[role] = seconds.get(role, 0.0) + (ticks - procs0.get(pid, (role, 0))[1]) / CLOCK_TICK
    seconds["loadgen"] = (children1.children_user + children1.children_system) - (
        children0.children_user + children0.children_system
    )
    result["cpu_s"] = {role: round(value, 2) for role, value in sorted(seconds.items())}


def per_unit(cpu: dict[str, Any], units: int) -> dict[str, Any]:
    """CPU use of a load, with CPU-milliseconds per request (or per event) for each role."""
    per = {role: round(1000 * seconds / max(1, units), 3) for role, seconds in cpu["cpu_s"].items()}
    per["total"] = round(sum(per.values()), 3)
    log(f"  CPU ms per unit: {per}; machine busy {cpu['machine_busy']:.0%}")
    return {**cpu, "units": units, "cpu_ms_per_unit": per}


def row(metric: str, measured: str, target: str, ceiling: str, ratio: str, ok: bool | None) -> list[str]:
    return [metric, measured, target, ceiling, ratio, "-" if ok is None else ("PASS" if ok else "FAIL")]


def table(rows: list[list[str]]) -> str:
    header = ["metric", "measured", "target", "ceiling", "ratio", "result"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="length of each measured load (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured load before each measurement")
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes (as served: 2)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads per web worker")
    parser.add_argument("--connections", type=int, default=0, help="closed-loop connections (default 2 per slot)")
    parser.add_argument("--open-connections", type=int, default=32, help="open-loop connections")
    parser.add_argument("--python-load", action="store_true", help="use bench/loadgen.py even if wrk is there")
    parser.add_argument(
        "--only", choices=["noop", "batch", "track", "browser"], action="append", help="run only these loads"
    )
    parser.add_argument("--keep", action="store_true", help="leave the services running until Ctrl-C")
    parser.add_argument(
        "--schemas", choices=["warn", "enforce"], help="validate every message against published schemas"
    )
    args = parser.parse_args()
    # A TERM (timeout, kill) still stops the web server and the worker through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = set(args.only or ["noop", "batch", "track", "browser"])
    slots = args.workers * args.threads
    connections = args.connections or max(4, 2 * slots)

    wrk = None if args.python_load else ensure_wrk()
    info = machine()
    started_at = datetime.now(UTC)
    log(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, loadavg {info['loadavg_at_start']}")
    env = bench_env(args)
    reset_stores()
    manage(env, "migrate", "--noinput")
    write_key = manage(env, "create_source", "bench-web", "--channel", "web").strip().splitlines()[-1]
    if args.schemas:
        publish = (
            "import django; django.setup(); from bench.traffic import publish_schemas; "
            f"print(publish_schemas({args.schemas!r}))"
        )
        done = subprocess.run([PYTHON, "-c", publish], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        log(f"schemas: {done.stdout.strip()} published, source policy {args.schemas}")

    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["make bench-ingest", *sys.argv[1:]]) if sys.argv[1:] else "make bench-ingest",
        "machine": info,
        "config": {
            "web": {"server": "granian", "workers": args.workers, "threads": args.threads},
            "celery": "1 prefork child, queue routing",
            "closed_loop_connections": connections,
            "open_loop_connections": args.open_connections,
            "seconds": args.seconds,
            "generator": "wrk" if wrk else "python",
            "schemas": args.schemas or "none",
        },
    }
    log(f"COPY ceiling: {args.copy_rows} rows")
    results["copy"] = copy_ceiling(args.copy_rows)
    log(f"COPY: {results['copy']['rows_per_s']} rows/s")

    RESULTS.mkdir(exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    services = Services(env, args, logdir)
    conn = psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True)
    try:
        services.start()
        log(f"{' '.join(services.web_argv()[2:])}; logs in {logdir}")
        load = Load(services.url, write_key, wrk, logdir)

        if "noop" in only:
            load.run("noop", seconds=args.warmup, connections=connections)
            with cpu_usage(services.groups) as cpu:
                noop = load.run("noop", seconds=args.seconds, connections=connections)
            results["noop"] = {**noop.__dict__, "rps": round(noop.rps), "cpu": per_unit(cpu, noop.requests)}
            log(f"no-op DRF view: {noop.rps:.0f} req/s, p50 {noop.p50_ms:.1f} ms, p99 {noop.p99_ms:.1f} ms")

        if "batch" in only:
            load.run("batch", seconds=args.warmup, connections=connections)
            analyze(conn)
            wait_drained(conn, 60)
            wall = time.monotonic()
            with cpu_usage(services.groups) as cpu:
                batch = load.run("batch", seconds=args.seconds, connections=connections)
            wall = time.monotonic() - wall
            time.sleep(2)  # let the requests still in flight when wrk stopped commit
            stored = stored_from(conn, load.prefix)
            stored_all = count(conn, "profiles_event")
            drain = wait_drained(conn, 120)
            routed = routed_from(conn, load.prefix)
            results["batch"] = {
                **batch.__dict__,
                "rps": round(batch.rps, 1),
                "events_stored": stored,
                "events_expected": (batch.requests - batch.errors["status"]) * 100,
                "events_per_s": round(stored / batch.duration_s),
                "events_in_database": stored_all,
                "wall_s": round(wall, 2),
                "outbox_drain_s": None if drain is None else round(drain, 2),
                "events_routed": routed,
                "customers": count(conn, "profiles_customer"),
                "identities": count(conn, "profiles_identity"),
                "cpu": per_unit(cpu, stored),
            }
            log(
                f"batch: {stored / batch.duration_s:.0f} events/s stored ({batch.rps:.0f} req/s, "
                f"p50 {batch.p50_ms:.1f} ms, p99 {batch.p99_ms:.1f} ms), outbox drained in {drain} s"
            )

        if "track" in only:
            load.run("track", seconds=args.warmup, connections=connections)
            analyze(conn)
            with cpu_usage(services.groups) as cpu:
                track = load.run("track", seconds=args.seconds, connections=connections)
            time.sleep(1)
            stored = stored_from(conn, load.prefix)
            results["track"] = {
                **track.__dict__,
                "rps": round(track.rps),
                "events_stored": stored,
                "cpu": per_unit(cpu, track.requests),
            }
            log(f"track saturation: {track.rps:.0f} req/s, p50 {track.p50_ms:.1f} ms, p99 {track.p99_ms:.1f} ms")
            wait_drained(conn, 60)
            rate = round(0.7 * track.rps)
            with cpu_usage(services.groups) as cpu:
                paced = load.run("track", seconds=args.seconds, connections=args.open_connections, rate=rate)
            results["track_open_loop"] = {
                **paced.__dict__,
                "target_rps": rate,
                "rps": round(paced.rps),
                "cpu": per_unit(cpu, paced.requests),
            }
            log(f"track at {rate} req/s (open loop): p50 {paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms")
            drain = wait_drained(conn, 120)
            results["track"]["outbox_drain_s"] = None if drain is None else round(drain, 2)
        if "browser" in only:
            results["browser"] = browser_loads(load, conn, args, services)
    finally:
        conn.close()
        try:
            if args.keep:
                log(f"services left running at {services.url}; Ctrl-C stops them")
                while True:
                    time.sleep(1)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            services.stop()

    results["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()[:2]]
    rows = summarize(results)
    print()
    print(table(rows))
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"ingest-{stamp}.json"
    results["table"] = rows
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


def browser_loads(load: Load, conn: psycopg.Connection[Any], args: argparse.Namespace, services: Any) -> dict[str, Any]:
    """Each path at the same open-loop rate, in BROWSER_ROUNDS rounds whose order alternates (a
    server path first, then its browser path; the other way round next), so that drift in what
    else the machine runs falls on both alike; web CPU per event stored, summed over the rounds."""
    measured: dict[str, Any] = {}
    pairs = (("track", "t", BROWSER_SINGLE_RPS, 1), ("batch", "b", BROWSER_BATCH_RPS, 100))
    for round_number in range(BROWSER_ROUNDS):
        for server, page, rate, per_request in pairs:
            connections = min(args.open_connections, 8) if per_request == 1 else 2
            for kind in (server, page) if round_number % 2 == 0 else (page, server):
                load.run(kind, seconds=args.warmup, connections=connections, rate=rate)
                wait_drained(conn, 60)
                with cpu_usage(services.groups) as cpu:
                    paced = load.run(kind, seconds=args.seconds, connections=connections, rate=rate)
                time.sleep(1)
                stored = stored_from(conn, load.prefix)
                total = measured.setdefault(
                    kind, {"target_rps": rate, "events_stored": 0, "events_expected": 0, "web_cpu_s": 0.0, "runs": []}
                )
                total["events_stored"] += stored
                total["events_expected"] += (paced.requests - paced.errors["status"]) * per_request
                total["web_cpu_s"] += cpu["cpu_s"].get("web", 0.0)
                total["runs"].append({**paced.__dict__, "events_stored": stored, "cpu": per_unit(cpu, stored)})
                log(
                    f"{kind} at {rate} req/s: {stored} events stored, p50 {paced.p50_ms:.1f} ms, "
                    f"p99 {paced.p99_ms:.1f} ms"
                )
    for total in measured.values():
        total["web_cpu_ms_per_event"] = round(1000 * total["web_cpu_s"] / max(1, total["events_stored"]), 4)
    return measured


def _web_cpu(result: dict[str, Any]) -> float:
    return float(result["web_cpu_ms_per_event"])


def summarize(results: dict[str, Any]) -> list[list[str]]:
    copy_rate = results["copy"]["rows_per_s"]
    generator = results["config"]["generator"]
    rows = [
        row(
            "load generator",
            "wrk" if generator == "wrk" else "python fallback (its CPU is taken from the service: lower bounds)",
            "",
            "",
            "",
            None,
        ),
        row("COPY into an events-shaped table (rows/s)", f"{copy_rate:,}", "", "", "", None),
    ]
    schemas = results["config"].get("schemas", "none")
    if schemas != "none":
        rows.append(row("schemas active (every message validated), policy", schemas, "", "", "", None))
    noop_rps = results.get("noop", {}).get("rps")
    if noop_rps:
        rows.append(row("no-op DRF view (req/s)", f"{noop_rps:,}", "", "", "", None))
    batch = results.get("batch")
    if batch:
        ratio = batch["events_per_s"] / copy_rate
        rows.append(
            row(
                "/v1/batch x100: events/s stored",
                f"{batch['events_per_s']:,} (acknowledged {batch['events_expected'] / batch['duration_s']:,.0f})",
                f">= {TARGET_BATCH_EVENTS:,} and >= {TARGET_BATCH_COPY_RATIO} x COPY",
                f"{copy_rate:,} (COPY)",
                f"{ratio:.2f}",
                batch["events_per_s"] >= TARGET_BATCH_EVENTS and ratio >= TARGET_BATCH_COPY_RATIO,
            )
        )
        rows.append(
            row(
                "/v1/batch x100: p50 / p99 latency (ms)",
                f"{batch['p50_ms']:.1f} / {batch['p99_ms']:.1f}",
                "",
                "",
                "",
                None,
            )
        )
        drained = batch["outbox_drain_s"] is not None and batch["events_routed"] >= batch["events_stored"]
        rows.append(
            row(
                "/v1/batch: stored rows = accepted, outbox drained",
                f"{batch['events_stored']:,} stored, {batch['events_routed']:,} routed, "
                f"drain {batch['outbox_drain_s']} s",
                "all routed",
                "",
                "",
                drained,
            )
        )
    track = results.get("track")
    if track:
        ratio = track["rps"] / noop_rps if noop_rps else 0.0
        rows.append(
            row(
                "/v1/track saturation (req/s)",
                f"{track['rps']:,}",
                f">= {TARGET_TRACK_RPS:,} and >= {TARGET_TRACK_NOOP_RATIO} x no-op",
                f"{noop_rps:,} (no-op)" if noop_rps else "",
                f"{ratio:.2f}" if noop_rps else "",
                track["rps"] >= TARGET_TRACK_RPS and (not noop_rps or ratio >= TARGET_TRACK_NOOP_RATIO),
            )
        )
        paced = results["track_open_loop"]
        rows.append(
            row(
                f"/v1/track p50 / p99 at {paced['target_rps']:,} req/s open loop (ms)",
                f"{paced['p50_ms']:.1f} / {paced['p99_ms']:.1f} (got {paced['rps']:,} req/s)",
                f"p99 <= {TARGET_TRACK_P99_MS:.0f}",
                "",
                "",
                paced["p99_ms"] <= TARGET_TRACK_P99_MS and paced["rps"] >= 0.95 * paced["target_rps"],
            )
        )
    browser = results.get("browser")
    if browser:
        for server, page in (("track", "t"), ("batch", "b")):
            base, shaped = _web_cpu(browser[server]), _web_cpu(browser[page])
            ratio = shaped / base if base else 0.0
            rows.append(
                row(
                    f"/v1/{page} (browser-shaped) vs /v1/{server}: web CPU ms per event",
                    f"{shaped:.3f} vs {base:.3f} ({BROWSER_ROUNDS} rounds); stored "
                    f"{browser[page]['events_stored']:,} of "
                    f"{browser[page]['events_expected']:,}",
                    f"<= {TARGET_BROWSER_CPU_RATIO:.2f} x",
                    "",
                    f"{ratio:.2f}",
                    bool(base)
                    and ratio <= TARGET_BROWSER_CPU_RATIO
                    # Requests still in flight when the load stopped are stored but not counted.
                    and browser[page]["events_stored"] >= browser[page]["events_expected"],
                )
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
