"""`make bench-decide`: POST /v1/decide latency at a fixed rate beside the machine's own ceiling.

Runs the service as in production (the web server as `manage.py serve` runs it, production settings,
PostgreSQL, Redis, one Celery worker on the routing queue) on the bench database, seeds the demo
(`seed_demo`: the VIP routing journey published for placement `support_entry`), identifies a
population of customers through /v1/batch (every tenth with trait `vip`), then drives the load from
a separate process (wrk, or bench/loadgen.py) and prints:

- the ceiling, measured in the same run under the same web server: req/s of the no-op DRF view
  (closed loop) and the CPU per request of each role while it ran, and its p50/p95/p99 at the
  target rate (open loop);
- /v1/decide: saturation req/s (closed loop), then p50/p95/p99 and the achieved rate at the
  target rate (open loop, default 1,000 req/s; the issue's bar is p99 <= 10 ms);
- that every answered decision was recorded (Decision rows against 200 answers).

Results go to bench/results/decide-<timestamp>.json. Options: `bench/decide.py --help`. The
service-starting and load helpers are bench/ingest.py's.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import (
    DB_NAME,
    PG,
    RESULTS,
    ROOT,
    Load,
    LoadResult,
    Services,
    bench_env,
    cpu_usage,
    ensure_wrk,
    log,
    machine,
    manage,
    per_unit,
    reset_stores,
    row,
    table,
    wait_drained,
)
from config.core.server import DEFAULT_THREADS

TARGET_RPS = 1_000
TARGET_P99_MS = 10.0
VIP_EVERY = 10


def seed_write_key(env: dict[str, str]) -> str:
    """Run seed_demo; the web source's write key from its output."""
    out = manage(env, "seed_demo")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "demo-web":
            return parts[1]
    raise SystemExit(f"seed_demo printed no demo-web key:\n{out}")


def identify_population(url: str, write_key: str, people: int) -> None:
    """user-1..user-N through /v1/batch identify calls; every VIP_EVERY-th has trait vip."""
    import base64
    import urllib.request

    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    for start in range(1, people + 1, 500):
        batch = [
            {
                "type": "identify",
                "userId": f"user-{p}",
                "messageId": f"population-{p}",
                "traits": {"vip": p % VIP_EVERY == 0, "name": f"Person {p}"},
            }
            for p in range(start, min(start + 500, people + 1))
        ]
        request = urllib.request.Request(
            f"{url}/v1/batch",
            data=orjson.dumps({"batch": batch}),
            headers={"Content-Type": "application/json", "Authorization": auth},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            if answer.status != 200:
                raise SystemExit(f"population batch answered {answer.status}")


def decisions_recorded(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM journeys_decision").fetchone()[0])  # type: ignore[index]


def routes_seen(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT result->>'route', degraded, count(*) FROM journeys_decision GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    return {f"{route}{' (degraded)' if degraded else ''}": int(n) for route, degraded, n in rows}


def latency(result: LoadResult) -> dict[str, Any]:
    return {
        **result.__dict__,
        "rps": round(result.rps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="length of each measured load (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured load before each measurement")
    parser.add_argument("--rate", type=int, default=TARGET_RPS, help="open-loop rate, requests/s (default 1000)")
    parser.add_argument("--people", type=int, default=5000, help="customers identified before the run")
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes (as served: 2)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads per web worker")
    parser.add_argument("--connections", type=int, default=0, help="closed-loop connections (default 2 per slot)")
    parser.add_argument("--open-connections", type=int, default=32, help="open-loop connections")
    parser.add_argument("--python-load", action="store_true", help="use bench/loadgen.py even if wrk is there")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    slots = args.workers * args.threads
    connections = args.connections or max(4, 2 * slots)
    os.environ["BENCH_PEOPLE"] = str(args.people)  # the load draws its customers from the population

    wrk = None if args.python_load else ensure_wrk()
    info = machine()
    started_at = datetime.now(UTC)
    log(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, loadavg {info['loadavg_at_start']}")
    env = bench_env(args)
    reset_stores()
    manage(env, "migrate", "--noinput")
    write_key = seed_write_key(env)

    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["make bench-decide", *sys.argv[1:]]) if sys.argv[1:] else "make bench-decide",
        "machine": info,
        "config": {
            "web": {"server": "granian", "workers": args.workers, "threads": args.threads},
            "closed_loop_connections": connections,
            "open_loop_connections": args.open_connections,
            "seconds": args.seconds,
            "rate": args.rate,
            "people": args.people,
            "vip_share": 1 / VIP_EVERY,
            "generator": "wrk" if wrk else "python",
        },
    }
    RESULTS.mkdir(exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    services = Services(env, args, logdir)
    conn = psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True)
    try:
        services.start()
        log(f"{' '.join(services.web_argv()[2:])}; logs in {logdir}")
        log(f"identifying {args.people} customers")
        identify_population(services.url, write_key, args.people)
        wait_drained(conn, 120)
        load = Load(services.url, write_key, wrk, logdir)

        load.run("noop", seconds=args.warmup, connections=connections)
        with cpu_usage(services.groups) as cpu:
            noop = load.run("noop", seconds=args.seconds, connections=connections)
        noop_cpu = per_unit(cpu, noop.requests)
        noop_paced = load.run("noop", seconds=args.seconds, connections=args.open_connections, rate=args.rate)
        results["noop"] = {**latency(noop), "cpu": noop_cpu}
        results["noop_open_loop"] = latency(noop_paced)
        log(f"no-op: {noop.rps:.0f} req/s; at {args.rate}/s p50 {noop_paced.p50_ms:.2f} p99 {noop_paced.p99_ms:.2f} ms")

        load.run("decide", seconds=args.warmup, connections=connections)
        time.sleep(1)  # the warm-up's decisions still held by the web processes' recorders
        before = decisions_recorded(conn)
        with cpu_usage(services.groups) as cpu:
            saturated = load.run("decide", seconds=args.seconds, connections=connections)
        results["decide"] = {**latency(saturated), "cpu": per_unit(cpu, saturated.requests)}
        log(f"decide saturation: {saturated.rps:.0f} req/s, p50 {saturated.p50_ms:.2f} ms, p99 {saturated.p99_ms:.2f}")

        with cpu_usage(services.groups) as cpu:
            paced = load.run("decide", seconds=args.seconds, connections=args.open_connections, rate=args.rate)
        results["decide_open_loop"] = {**latency(paced), "target_rps": args.rate, "cpu": per_unit(cpu, paced.requests)}
        log(
            f"decide at {args.rate}/s: got {paced.rps:.0f} req/s, p50 {paced.p50_ms:.2f} p95 {paced.p95_ms:.2f} "
            f"p99 {paced.p99_ms:.2f} ms"
        )
        time.sleep(1)  # requests in flight when the load stopped, decisions the recorders hold
        answered = saturated.requests + paced.requests - saturated.errors["status"] - paced.errors["status"]
        results["recorded"] = {
            "decisions_recorded": decisions_recorded(conn) - before,
            "answered_200": answered,
            "routes": routes_seen(conn),
        }
    finally:
        conn.close()
        services.stop()

    results["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()[:2]]
    rows = summarize(results)
    print()
    print(table(rows))
    path = RESULTS / f"decide-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    results["table"] = rows
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


def _cpu(run: dict[str, Any]) -> str:
    per = run["cpu"]["cpu_ms_per_unit"]
    return f"{per.get('web', 0):.2f} / {per.get('postgres', 0):.2f} / {per['total']:.2f}"


def summarize(results: dict[str, Any]) -> list[list[str]]:
    noop, noop_paced = results["noop"], results["noop_open_loop"]
    decide, paced = results["decide"], results["decide_open_loop"]
    recorded = results["recorded"]
    generator = results["config"]["generator"]
    return [
        row("load generator", "wrk" if generator == "wrk" else "python fallback (lower bounds)", "", "", "", None),
        row("no-op DRF view (req/s)", f"{noop['rps']:,}", "", "", "", None),
        row(
            "CPU ms per request, saturated: web / PostgreSQL / all",
            _cpu(decide),
            "",
            f"{_cpu(noop)} (no-op)",
            f"{decide['cpu']['cpu_ms_per_unit']['total'] / max(0.001, noop['cpu']['cpu_ms_per_unit']['total']):.2f}",
            None,
        ),
        row(
            "/v1/decide saturation (req/s)",
            f"{decide['rps']:,}",
            "",
            f"{noop['rps']:,} (no-op)",
            f"{decide['rps'] / max(1, noop['rps']):.2f}",
            None,
        ),
        row(
            f"/v1/decide p50 / p95 / p99 at {paced['target_rps']:,} req/s (ms)",
            f"{paced['p50_ms']:.2f} / {paced['p95_ms']:.2f} / {paced['p99_ms']:.2f} (got {paced['rps']:,} req/s)",
            f"p99 <= {TARGET_P99_MS:.0f}",
            f"{noop_paced['p50_ms']:.2f} / {noop_paced['p95_ms']:.2f} / {noop_paced['p99_ms']:.2f} (no-op)",
            "",
            paced["p99_ms"] <= TARGET_P99_MS and paced["rps"] >= 0.95 * paced["target_rps"],
        ),
        row(
            "decisions recorded / answered",
            f"{recorded['decisions_recorded']:,} / {recorded['answered_200']:,}",
            "all",
            "",
            "",
            recorded["decisions_recorded"] >= recorded["answered_200"],
        ),
        row("routes answered", ", ".join(f"{k}: {v:,}" for k, v in recorded["routes"].items()), "", "", "", None),
    ]


if __name__ == "__main__":
    sys.exit(main())
