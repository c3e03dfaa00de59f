"""`make bench-sessions`: session reads and writes as a channel makes them, beside Redis's own figures.

Runs the service as in production (the web server as `manage.py serve` runs it, production settings,
PostgreSQL, Redis) on its own database (throughline_bench_sessions) and its own Redis server: a
private `redis-server` on a free port, started and stopped here, keeping nothing on disk like the
machine's. A private server, because Redis's counters (INFO stats, commandstats) are per server, and
other agents' test runs use the shared one: here every command counted is ours. Then it prints:

- raw Redis, measured in the same run on the same server: redis-benchmark GET/SET (50 clients),
  requests/s and p50/p99, unpipelined and pipelined 16 deep;
- Redis round trips per API call: 1,000 sequential GETs and 500 PATCHes through the API, counted
  with INFO stats (total_reads_processed: one per request the server read from a client) and
  commandstats (EVALSHA calls); no MONITOR;
- mixed traffic at fixed rates (2,000 req/s, the target, then 1,000 and 500: 80% GET, 20% PATCH
  with If-Match) from two wrk processes paced open-loop by a Lua schedule, so GET and PATCH
  latencies are measured apart: p50/p90/p99/p99.9 each, against the targets GET p99 <= 5 ms and
  PATCH p99 <= 10 ms;
- CPU per request in each paced run (the web server's processes, the PostgreSQL backends of the
  bench database, the private Redis), a cost that does not move with the neighbours' load;
- the saturation throughput at that moment, with the web server's CPU per request, of a WSGI
  callable that does nothing (the server's own cost, same worker settings), of /healthz (a plain
  Django view behind settings.MIDDLEWARE) and of a session GET;
- the load on the machine before and after (other agents share its 2 cores).

Latency is wrk's: from a request's send to its response, on loopback. Results also go to
bench/results/sessions-<timestamp>.json. Options: `bench/sessions.py --help`.
"""

import argparse
import base64
import contextlib
import http.client
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.core.server import DEFAULT_THREADS, web_argv  # noqa: E402 - after the path is set

PYTHON = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"
DB_NAME = "throughline_bench_sessions"
RESULTS = ROOT / "bench" / "results"
TARGET_GET_P99_MS = 5.0
TARGET_PATCH_P99_MS = 10.0

# Paced open-loop requests: every call to delay() books the next slot of this thread's schedule,
# so the rate holds whatever the latency (as long as connections are free).
WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } tl_timeval;
int gettimeofday(tl_timeval *tv, void *tz);
]]
local tv = ffi.new("tl_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local ids = {}
local interval_ms, next_at, counter = 1, nil, 0

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  interval_ms = 1000 / tonumber(args[2])
  math.randomseed(os.time() + tonumber(args[3] or 0))
end

function delay()
  local now = now_ms()
  if next_at == nil or next_at < now - 1000 then next_at = now end
  next_at = next_at + interval_ms
  return math.max(0, next_at - now)
end

function request()
  local id = ids[math.random(#ids)]
  counter = counter + 1
  if MODE == "patch" then
    local body = '{"cart":{"qty":' .. (counter % 9 + 1) .. '},"seen":' .. counter .. '}'
    return wrk.format("PATCH", "/v1/sessions/" .. id, {
      ["Authorization"] = AUTH, ["If-Match"] = "*", ["Content-Type"] = "application/merge-patch+json"
    }, body)
  end
  return wrk.format("GET", "/v1/sessions/" .. id, {["Authorization"] = AUTH})
end

function done(summary, latency, requests)
  local out = string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,' ..
    '"timeouts":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f}',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000, latency.mean / 1000)
  io.stderr:write("RESULT " .. out .. "\n")
end
"""


def log(message: str) -> None:
    print(f"[bench-sessions] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None and tool == "wrk" and os.geteuid() == 0:
        log("wrk is missing: installing it with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True, timeout=300)
        path = shutil.which(tool)
    if path is None:
        package = {"wrk": "wrk", "redis-server": "redis-server", "redis-benchmark": "redis-tools"}[tool]
        raise SystemExit(f"{tool} is required: apt-get install {package}")
    return path


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    process = subprocess.Popen(
        [
            require("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield port, process.pid
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def redis_info(port: int, section: str) -> dict[str, str]:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", section], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#"))


def redis_benchmark(port: int, pipeline: int, requests: int) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        [
            require("redis-benchmark"),
            "-p",
            str(port),
            "-t",
            "get,set",
            "-n",
            str(requests),
            "-c",
            "50",
            "-P",
            str(pipeline),
            "--csv",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    results: dict[str, dict[str, float]] = {}
    lines = [line.replace('"', "").split(",") for line in out.strip().splitlines()]
    header = lines[0]
    for row in lines[1:]:
        values = dict(zip(header, row, strict=True))
        results[values["test"]] = {
            "rps": float(values["rps"]),
            "p50_ms": float(values["p50_latency_ms"]),
            "p99_ms": float(values["p99_latency_ms"]),
        }
    return results


def prepare_database(env: dict[str, str]) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)


def create_source(env: dict[str, str]) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", "create_source", "bench-web", "--channel", "web"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return out.strip().splitlines()[-1]


class Api:
    """A keep-alive HTTP client per thread, like a channel's backend calling the API."""

    def __init__(self, port: int, write_key: str):
        self.port = port
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Authorization": self.auth, "Content-Type": "application/json", **headers}
        self.conn.request(method, path, body=data, headers=all_headers)
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, (json.loads(payload) if payload else None)


def wait_for_server(port: int, process: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the web server exited at start; see {logfile}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the web server did not answer within 60 s")


def seed(port: int, write_key: str, count: int) -> list[str]:
    """Sessions with a realistic state: a cart and a half-filled form (about 1 KB of JSON)."""

    def start(i: int) -> str:
        api = Api(port, write_key)
        state = {
            "cart": {"items": [{"sku": f"SKU-{i}-{n}", "qty": n + 1, "price": 19.99} for n in range(5)], "qty": 1},
            "form": {"step": 2, "fields": {"name": "Ann Example", "city": "Lyon", "notes": "x" * 400}},
        }
        status, body = api.call("POST", "/v1/sessions", {"userId": f"bench-{i}", "device": "laptop", "state": state})
        assert status == 201, (status, body)
        return str(body["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, range(count)))


def count_round_trips(redis_port: int, port: int, write_key: str, ids: list[str]) -> dict[str, Any]:
    api = Api(port, write_key)
    api.call("GET", f"/v1/sessions/{ids[0]}")  # connections warm
    result: dict[str, Any] = {}
    for name, calls in (("get", 1000), ("patch", 500)):
        before_stats, before_cmds = redis_info(redis_port, "stats"), redis_info(redis_port, "commandstats")
        for i in range(calls):
            session_id = ids[i % len(ids)]
            if name == "get":
                status, _ = api.call("GET", f"/v1/sessions/{session_id}")
            else:
                status, _ = api.call("PATCH", f"/v1/sessions/{session_id}", {"seen": i}, **{"If-Match": "*"})
            assert status == 200, status
        after_stats, after_cmds = redis_info(redis_port, "stats"), redis_info(redis_port, "commandstats")
        # The INFO call that took the "before" figures is itself one read.
        reads = int(after_stats["total_reads_processed"]) - int(before_stats["total_reads_processed"]) - 1
        result[name] = {
            "calls": calls,
            "redis_reads_per_call": round(reads / calls, 3),
            "evalsha_per_call": round((_calls(after_cmds, "evalsha") - _calls(before_cmds, "evalsha")) / calls, 3),
            "commands_per_call_including_inside_scripts": round(
                (int(after_stats["total_commands_processed"]) - int(before_stats["total_commands_processed"]) - 1)
                / calls,
                3,
            ),
        }
    return result


def _calls(stats: dict[str, str], command: str) -> int:
    value = stats.get(f"cmdstat_{command}", "calls=0")
    return int(value.split(",")[0].split("=")[1])


def run_wrk(
    port: int, mode: str, rps: float, seconds: int, connections: int, ids_file: Path, write_key: str, workdir: Path
) -> subprocess.Popen[str]:
    script = workdir / f"{mode}.lua"
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    script.write_text(f'MODE = "{mode}"\nAUTH = "{auth}"\n' + WRK_LUA)
    return subprocess.Popen(
        [
            require("wrk"),
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(ids_file),
            str(rps),
            str(random.randint(1, 10**6)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wrk_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=600)
    line = next((line for line in err.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}\n{err}")
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
    return found


def postgres_backends() -> list[int]:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB_NAME]).fetchall()
    return [int(row[0]) for row in rows]


def bare_application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A WSGI callable that does nothing: what the web server itself costs per request."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def _closed_loop(url: str, pids: list[int]) -> tuple[float, float]:
    """wrk for 5 s, 16 connections: requests/s, and CPU ms per request of `pids`."""
    before = cpu_seconds(pids)
    out = subprocess.run(
        [require("wrk"), "-t", "1", "-c", "16", "-d", "5s", url], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    used = cpu_seconds(pids) - before
    served = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    rps = float(next(line for line in out.splitlines() if line.startswith("Requests/sec:")).split()[1])
    return rps, round(used * 1000 / max(1, served), 3)


def ceilings(
    args: argparse.Namespace, port: int, write_key: str, ids: list[str], workdir: Path, web_pid: int
) -> dict[str, float]:
    """Saturation throughput and web server CPU per request, closed loop, right now: a WSGI
    callable that does nothing under the same server settings (the server's own cost), /healthz
    (a plain Django view behind settings.MIDDLEWARE) and a session GET."""
    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    bare_port = free_port()
    argv = web_argv(
        PYTHON, app="bench.sessions:bare_application", host="127.0.0.1", port=bare_port, workers=args.workers,
        threads=args.threads,
    )  # fmt: skip
    bare = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", bare_port), timeout=0.2):
                break
            time.sleep(0.1)
        time.sleep(1)  # the workers booted
        bare_rps, bare_cpu = _closed_loop(f"http://127.0.0.1:{bare_port}/", [bare.pid, *children(bare.pid)])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bare.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            bare.wait(timeout=15)
    web = [web_pid, *children(web_pid)]
    healthz_rps, healthz_cpu = _closed_loop(f"http://127.0.0.1:{port}/healthz", web)
    before = cpu_seconds(web)
    get = wrk_result(run_wrk(port, "get", 1e6, 5, 16, ids_file, write_key, workdir))
    get_cpu = round((cpu_seconds(web) - before) * 1000 / max(1, get["requests"]), 3)
    return {
        "bare_wsgi_rps": bare_rps,
        "bare_wsgi_cpu_ms": bare_cpu,
        "healthz_rps": healthz_rps,
        "healthz_cpu_ms": healthz_cpu,
        "session_get_rps": get["rps"],
        "session_get_cpu_ms": get_cpu,
    }


def mixed_load(
    args: argparse.Namespace,
    rate: float,
    port: int,
    write_key: str,
    ids: list[str],
    workdir: Path,
    pids: dict[str, list[int]],
) -> dict[str, Any]:
    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    get_rps = rate * args.get_share
    patch_rps = rate - get_rps
    get_conns = max(4, round(args.connections * args.get_share))
    patch_conns = max(4, args.connections - get_conns)
    log(f"warm-up: {args.warmup} s at {rate} req/s")
    warm = [
        run_wrk(port, "get", get_rps, args.warmup, get_conns, ids_file, write_key, workdir),
        run_wrk(port, "patch", patch_rps, args.warmup, patch_conns, ids_file, write_key, workdir),
    ]
    for process in warm:
        wrk_result(process)
    log(f"measuring: {args.seconds} s at {rate} req/s ({args.get_share:.0%} GET)")
    load_before = os.getloadavg()
    web_pids = pids["web"] + [c for p in pids["web"] for c in children(p)]
    groups = {"web": web_pids, "postgresql": postgres_backends(), "redis": pids["redis"]}
    cpu_before = {name: cpu_seconds(group) for name, group in groups.items()}
    processes = {
        "get": run_wrk(port, "get", get_rps, args.seconds, get_conns, ids_file, write_key, workdir),
        "patch": run_wrk(port, "patch", patch_rps, args.seconds, patch_conns, ids_file, write_key, workdir),
    }
    results = {name: wrk_result(process) for name, process in processes.items()}
    served = results["get"]["requests"] + results["patch"]["requests"]
    results["cpu_ms_per_request"] = {
        name: round((cpu_seconds(group) - cpu_before[name]) * 1000 / max(1, served), 3)
        for name, group in groups.items()
    }
    results["offered_rps"] = {"get": get_rps, "patch": patch_rps}
    results["achieved_rps"] = round(results["get"]["rps"] + results["patch"]["rps"], 1)
    results["loadavg_during"] = {"before": load_before, "after": os.getloadavg()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rates",
        default="2000,1000,500",
        help="mixed requests per second offered, one measured run each; the first is the target",
    )
    parser.add_argument("--get-share", type=float, default=0.8, help="share of GETs in the mix")
    parser.add_argument("--seconds", type=int, default=30, help="measured duration")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=2000, help="sessions seeded before the load")
    parser.add_argument("--connections", type=int, default=40, help="wrk connections, split GET/PATCH")
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes (as served: 2)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads per web worker")
    args = parser.parse_args()

    require("wrk")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_at_start": os.getloadavg()}
    log(f"machine: {machine['cpus']} cpus, load average {machine['loadavg_at_start']}; logs in {workdir}")
    with private_redis(workdir) as (redis_port, redis_pid):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "bench-only-not-secret",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
        }
        log("preparing the database")
        prepare_database(env)
        write_key = create_source(env)

        log("raw Redis (redis-benchmark, 50 clients)")
        raw = {
            "unpipelined": redis_benchmark(redis_port, 1, 200_000),
            "pipelined_16": redis_benchmark(redis_port, 16, 1_000_000),
        }

        port = free_port()
        logfile = workdir / "web.log"
        argv = web_argv(PYTHON, host="127.0.0.1", port=port, workers=args.workers, threads=args.threads)
        web = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=logfile.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_server(port, web, logfile)
            log(f"seeding {args.sessions} sessions")
            ids = seed(port, write_key, args.sessions)
            log("counting Redis round trips per call")
            round_trips = count_round_trips(redis_port, port, write_key, ids)
            log("saturation ceilings (closed loop, 5 s each)")
            ceiling = ceilings(args, port, write_key, ids, workdir, web.pid)
            pids = {"web": [web.pid], "redis": [redis_pid]}
            loads = [
                mixed_load(args, float(rate), port, write_key, ids, workdir, pids) for rate in args.rates.split(",")
            ]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(web.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                web.wait(timeout=15)

    report = {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine,
        "web": {"server": "granian", "workers": args.workers, "threads": args.threads},
        "redis_benchmark": raw,
        "round_trips": round_trips,
        "ceilings": ceiling,
        "mixed": loads,
        "targets": {"get_p99_ms": TARGET_GET_P99_MS, "patch_p99_ms": TARGET_PATCH_P99_MS},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"sessions-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2))
    print_report(report)
    log(f"written to {out}")


def print_report(report: dict[str, Any]) -> None:
    raw, trips = report["redis_benchmark"], report["round_trips"]
    print()
    print(f"Machine: {report['machine']['cpus']} cpus; load average at start {report['machine']['loadavg_at_start']}")
    for mode, results in raw.items():
        for test, r in results.items():
            print(
                f"redis-benchmark {test:3} {mode:12}: {r['rps']:>11,.0f} req/s  "
                f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
            )
    for name, t in trips.items():
        print(
            f"Redis round trips per {name.upper():5}: {t['redis_reads_per_call']} "
            f"(EVALSHA {t['evalsha_per_call']}, "
            f"commands incl. inside scripts {t['commands_per_call_including_inside_scripts']})"
        )
    ceiling = report["ceilings"]
    print(
        f"Saturation now (web server CPU per request): bare WSGI {ceiling['bare_wsgi_rps']:,.0f} req/s "
        f"({ceiling['bare_wsgi_cpu_ms']} ms), /healthz {ceiling['healthz_rps']:,.0f} req/s "
        f"({ceiling['healthz_cpu_ms']} ms), session GET {ceiling['session_get_rps']:,.0f} req/s "
        f"({ceiling['session_get_cpu_ms']} ms)"
    )
    for mixed in report["mixed"]:
        print(f"Mixed load: offered {mixed['offered_rps']}, achieved {mixed['achieved_rps']} req/s")
        for name, target in (("get", TARGET_GET_P99_MS), ("patch", TARGET_PATCH_P99_MS)):
            r = mixed[name]
            verdict = "meets" if r["p99_ms"] <= target else "MISSES"
            errors = r["status_errors"] + r["connect_errors"] + r["read_errors"] + r["timeouts"]
            print(
                f"  {name.upper():5} {r['rps']:>7,.0f} req/s  p50 {r['p50_ms']:.2f}  p90 {r['p90_ms']:.2f}  "
                f"p99 {r['p99_ms']:.2f}  p99.9 {r['p999_ms']:.2f} ms  errors {errors}  ({verdict} p99 <= {target} ms)"
            )
        cpu = mixed["cpu_ms_per_request"]
        print(
            f"  CPU per request: web {cpu['web']} ms, PostgreSQL {cpu['postgresql']} ms, Redis {cpu['redis']} ms; "
            f"load average during: {mixed['loadavg_during']}"
        )


if __name__ == "__main__":
    main()
