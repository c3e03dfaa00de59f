"""`make bench-journeys`: journeys end to end, and durable timers falling due together.

Runs the service as in production (the web server as `manage.py serve` runs it, production settings,
PostgreSQL, Redis, a Celery worker on the routing and journeys queues with beat embedded for the 1 s
timer tick) on the bench database, seeds the demo (`seed_demo`: the three demo journeys published),
and measures:

1. End to end, ingestion to the action recorded: events are sent through /v1/batch at a fixed
   rate (default 1,000 events/s, in batches of 20) with a mix that triggers and ends the demo
   journeys (Cart Abandoned, Form Started on the web, Order Completed, Form Submitted, and
   Product Viewed that triggers nothing). For every enrollment one of the run's events started,
   the latency is from the event's receipt (profiles_event.received_at) to its first step run
   (journeys_steprun.at, written in the routing transaction). Also: the routing lag of the same
   events (orchestration_routelog) as the floor that journeys add to, whether the outbox
   drained, and the CPU each role (web, worker, PostgreSQL backends, Redis) used per event sent
   over the load and the drain (the worker's share includes routing the events routing itself
   ingests: Session Started, Segment Entered). bench/profile_routing.py profiles routing alone.
2. Timers: N customers (default 10,000) enter a bench journey whose first step waits until a
   local time window opens, so every timer is due at the same minute boundary. A watcher polls
   the count of fired timers every 20 ms: each timer's lag is when its firing became visible
   (committed) minus its due time; the tick's own `fired_at - due_at` is reported beside it.

Results go to bench/results/journeys-<timestamp>.json. Options: `bench/journeys.py --help`.
The service-starting helpers are bench/ingest.py's.
"""

import argparse
import base64
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.decide import seed_write_key
from bench.ingest import (
    DB_NAME,
    PG,
    PYTHON,
    RESULTS,
    ROOT,
    Services,
    bench_env,
    cpu_usage,
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

TARGET_E2E_P50_MS = 50.0
TARGET_E2E_P99_MS = 250.0
TARGET_TIMER_P99_S = 1.0
BATCH = 20
# The event mix: (name, share). Product Viewed triggers no journey: routing still reads it.
MIX = (("Cart Abandoned", 20), ("Form Started", 10), ("Order Completed", 10), ("Form Submitted", 5))
TIMER_JOURNEY = "bench-timers"
TIMER_EVENT = "Bench Timer"


class JourneysServices(Services):
    """bench/ingest.py's services, with the worker also on the journeys queue and beat inside it."""

    def celery_argv(self) -> list[str]:
        return [
            PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "routing,journeys", "--beat",
            "--schedule", str(self.logdir / "beat-schedule"),
            "--pool", "prefork", "--concurrency", str(self.args.worker_concurrency), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip


class Sender:
    """Posts /v1/batch bodies on a fixed schedule from a few keep-alive connections."""

    def __init__(self, url: str, write_key: str, connections: int):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self.connections = connections
        self.errors = 0
        self.sent = 0
        self.late = 0

    def run(self, bodies: list[bytes], rate_per_s: float) -> float:
        """Send `bodies` at `rate_per_s` requests/s in all; returns the seconds it took."""
        interval = self.connections / rate_per_s
        lock = threading.Lock()
        queue = list(reversed(bodies))
        started = time.monotonic()

        def worker(offset: float) -> None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            next_at = started + offset
            while True:
                with lock:
                    if not queue:
                        break
                    body = queue.pop()
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    self.late += 1
                next_at += interval
                try:
                    conn.request(
                        "POST", "/v1/batch", body, {"Content-Type": "application/json", "Authorization": self.auth}
                    )
                    answer = conn.getresponse()
                    answer.read()
                    ok = answer.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                with lock:
                    self.sent += 1
                    self.errors += 0 if ok else 1
            conn.close()

        threads = [
            threading.Thread(target=worker, args=(i * interval / self.connections,)) for i in range(self.connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started


def e2e_bodies(run: str, events: int, people: int) -> list[bytes]:
    names = [name for name, share in MIX for _ in range(share)]
    names += ["Product Viewed"] * (100 - len(names))
    bodies = []
    for start in range(0, events, BATCH):
        batch = []
        for i in range(start, min(start + BATCH, events)):
            p = (i * 7919) % people
            batch.append(
                {
                    "type": "track",
                    "userId": f"{run}-user-{p}",
                    "event": names[(i * 31) % len(names)],
                    "messageId": f"{run}-{i}",
                    "properties": {"item_count": 1 + i % 4},
                }
            )
        bodies.append(orjson.dumps({"batch": batch}))
    return bodies


def e2e_latency(conn: psycopg.Connection[Any], run: str) -> dict[str, Any]:
    """Receipt of the triggering event -> first step run of the enrollment it started."""
    found = conn.execute(
        """
        SELECT count(*),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lat),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY lat),
               max(lat)
        FROM (
            SELECT extract(epoch FROM (s.first_at - e.received_at)) * 1000 AS lat
            FROM journeys_enrollment en
            JOIN profiles_event e ON e.id = en.trigger_event_id
            JOIN LATERAL (SELECT min(at) AS first_at FROM journeys_steprun WHERE enrollment_id = en.id) s ON true
            WHERE e.message_id LIKE %s
        ) AS t
        """,
        [f"{run}-%"],
    ).fetchone()
    routed = conn.execute(
        """
        SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY r.lag_ms),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY r.lag_ms)
        FROM orchestration_routelog r JOIN profiles_event e ON e.id = r.event_id WHERE e.message_id LIKE %s
        """,
        [f"{run}-%"],
    ).fetchone()
    assert found is not None and routed is not None
    by_journey = dict(
        conn.execute(
            "SELECT j.key, count(*) FROM journeys_enrollment en JOIN journeys_journey j ON j.id = en.journey_id "
            "JOIN profiles_event e ON e.id = en.trigger_event_id WHERE e.message_id LIKE %s GROUP BY j.key",
            [f"{run}-%"],
        ).fetchall()
    )
    return {
        "enrollments": int(found[0]),
        "by_journey": by_journey,
        "p50_ms": round(float(found[1] or 0), 2),
        "p99_ms": round(float(found[2] or 0), 2),
        "max_ms": round(float(found[3] or 0), 2),
        "events_routed": int(routed[0]),
        "routing_lag_p50_ms": round(float(routed[1] or 0), 2),
        "routing_lag_p99_ms": round(float(routed[2] or 0), 2),
    }


def publish_timer_journey(env: dict[str, str], opens: datetime) -> None:
    start = opens.strftime("%H:%M")
    end = (opens + timedelta(minutes=30)).strftime("%H:%M")
    definition = {
        "trigger": {"type": "event", "event": TIMER_EVENT},
        "entry": {"reentry": "once"},
        "start": "hold",
        "steps": {
            "hold": {"type": "wait", "until_local": {"start": start, "end": end}, "next": "done"},
            "done": {"type": "exit"},
        },
    }
    code = (
        "from journeys.services import journey_create, journey_publish; import json; "
        f"journey_publish(version=journey_create(key={TIMER_JOURNEY!r}, name='Bench timers', "
        f"definition=json.loads({json.dumps(json.dumps(definition))})))"
    )
    manage(env, "shell", "-c", code)


class FiredWatcher:
    """Polls how many timers due at `due` have fired, every `interval` seconds.

    The count is a scan of the timer table filtered on the due time, about a millisecond of
    PostgreSQL per poll: joining enrollments and journeys to pick the bench journey's timers, as
    the reports at the end do, took 50 ms a poll, so the watcher held most of a core of the two
    the tick needs while it measured the tick. The bench journey's timers are the only ones due
    at that exact instant (checked before the watch starts)."""

    def __init__(self, interval: float, due: datetime):
        self.interval = interval
        self.due = due
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def count(self, conn: psycopg.Connection[Any], *, fired: bool) -> int:
        found = conn.execute(
            "SELECT count(*) FROM journeys_timer WHERE due_at = %s AND (fired_at IS NOT NULL) = %s",
            [self.due, fired],
            prepare=True,
        ).fetchone()
        return int(found[0])  # type: ignore[index]

    def loop(self) -> None:
        with psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True) as conn:
            while not self.stop.is_set():
                self.samples.append((time.time(), self.count(conn, fired=True)))
                time.sleep(self.interval)


def timer_lags(samples: list[tuple[float, int]], due: float, total: int) -> dict[str, Any]:
    """Per timer, when its firing became visible minus its due time (polling resolution)."""
    lags: list[float] = []
    seen = 0
    for at, fired in samples:
        if fired > seen:
            lags.extend([max(0.0, at - due)] * (fired - seen))
            seen = fired
    lags.sort()

    def pct(p: float) -> float | None:
        return round(lags[min(len(lags) - 1, int(len(lags) * p))], 3) if lags else None

    return {"fired": seen, "timers": total, "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": pct(1.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="events/s sent (default 1000)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the end-to-end load (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured load first (its own customers)")
    parser.add_argument("--people", type=int, default=20_000, help="customers the events are spread over")
    parser.add_argument("--timers", type=int, default=10_000, help="timers falling due together (default 10000)")
    parser.add_argument("--workers", type=int, default=2, help="web server worker processes (as served: 2)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="threads per web worker")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery prefork children")
    parser.add_argument("--connections", type=int, default=8, help="sending connections")
    parser.add_argument(
        "--timer-lead", type=float, default=None, help="seconds at least between the timers' entry and due time"
    )
    parser.add_argument("--only", choices=["e2e", "timers"], action="append", help="run only these parts")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = set(args.only or ["e2e", "timers"])

    info = machine()
    started_at = datetime.now(UTC)
    log(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, loadavg {info['loadavg_at_start']}")
    env = {**bench_env(args), "JOURNEYS_FALLBACK_TIMEZONE": "UTC"}
    reset_stores()
    manage(env, "migrate", "--noinput")
    write_key = seed_write_key(env)
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["make bench-journeys", *sys.argv[1:]]) if sys.argv[1:] else "make bench-journeys",
        "machine": info,
        "config": {
            "web": {"server": "granian", "workers": args.workers, "threads": args.threads},
            "celery": f"{args.worker_concurrency} prefork children, queues routing and journeys, beat embedded",
            "rate": args.rate,
            "seconds": args.seconds,
            "batch": BATCH,
            "people": args.people,
            "timers": args.timers,
            "mix": dict(MIX),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="bench-journeys-"))
    services = JourneysServices(env, args, logdir)
    conn = psycopg.connect(f"{PG}/{DB_NAME}", autocommit=True)
    run = f"jb{int(time.time())}"
    try:
        services.start()
        log(f"{' '.join(services.web_argv()[2:])}; logs in {logdir}")
        sender = Sender(services.url, write_key, args.connections)

        if "e2e" in only:
            if args.warmup > 0:
                warm = int(args.rate * args.warmup)
                sender.run(e2e_bodies(f"{run}w", warm, args.people), args.rate / BATCH)
                wait_drained(conn, 120)
                sender.errors = sender.late = 0
            events = int(args.rate * args.seconds)
            bodies = e2e_bodies(run, events, args.people)
            log(f"end to end: {events} events at {args.rate}/s")
            # CPU per role over the load and the drain: per event sent, the web tier's ingestion
            # and the worker's routing of it (and of the events routing itself ingests).
            with cpu_usage(services.groups) as cpu:
                took = sender.run(bodies, args.rate / BATCH)
                drain = wait_drained(conn, 180)
            results["e2e"] = {
                "events": events,
                "seconds": round(took, 2),
                "events_per_s": round(events / took),
                "request_errors": sender.errors,
                "late_sends": sender.late,
                "outbox_drain_s": None if drain is None else round(drain, 2),
                **e2e_latency(conn, run),
                "cpu": per_unit(cpu, events),
            }
            e2e = results["e2e"]
            log(
                f"end to end: {e2e['enrollments']} enrollments, p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms "
                f"(routing lag p50 {e2e['routing_lag_p50_ms']} ms, p99 {e2e['routing_lag_p99_ms']} ms)"
            )

        if "timers" in only:
            # The first minute boundary far enough ahead for every customer to have entered and wait.
            lead = args.timer_lead if args.timer_lead is not None else max(60.0, args.timers / 250)
            opens = (datetime.now(UTC) + timedelta(seconds=lead)).replace(second=0, microsecond=0) + timedelta(
                minutes=1
            )
            publish_timer_journey(env, opens)
            log(f"timers: {args.timers} customers enter {TIMER_JOURNEY}, all due at {opens.isoformat()}")
            bodies = [
                orjson.dumps(
                    {
                        "batch": [
                            {
                                "type": "track",
                                "userId": f"{run}-timer-{i}",
                                "event": TIMER_EVENT,
                                "messageId": f"{run}-t{i}",
                            }
                            for i in range(start, min(start + 100, args.timers))
                        ]
                    }
                )
                for start in range(0, args.timers, 100)
            ]
            sender.run(bodies, 50)
            wait_drained(conn, 300)
            waiting = timers_of_bench_journey(conn, fired=False)
            if datetime.now(UTC) >= opens:
                log("timers: the customers entered after the due time; raise --timers lead or the machine is slow")
            watcher = FiredWatcher(0.02, opens)
            due_then = watcher.count(conn, fired=False)
            if due_then != waiting:
                log(f"timers: {due_then} timers due at {opens.isoformat()} but {waiting} of the bench journey")
            watcher.thread.start()
            # CPU is measured from just before the due time until the last timer fired: the
            # worker's (tick, beat, Celery) and PostgreSQL's (the tick's backends and the watcher's)
            # per timer, a figure that holds still on a machine other work is using.
            remaining = (opens - datetime.now(UTC)).total_seconds()
            time.sleep(max(0.0, remaining - 0.3))
            deadline = time.monotonic() + 120
            with cpu_usage(services.groups) as cpu:
                while (not watcher.samples or watcher.samples[-1][1] < waiting) and time.monotonic() < deadline:
                    time.sleep(0.05)
            watcher.stop.set()
            watcher.thread.join()
            tick = conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FROM ("
                "SELECT extract(epoch FROM (t.fired_at - t.due_at)) AS lag FROM journeys_timer t "
                "JOIN journeys_enrollment en ON en.id = t.enrollment_id "
                "JOIN journeys_journey j ON j.id = en.journey_id "
                "WHERE j.key = %s AND t.fired_at IS NOT NULL) AS lags",
                [TIMER_JOURNEY],
            ).fetchone()
            assert tick is not None
            results["timers"] = {
                "due_at": opens.isoformat(),
                "timers_waiting_before": waiting,
                **timer_lags(watcher.samples, opens.timestamp(), args.timers),
                "tick_fired_at_p50_s": round(float(tick[0] or 0), 3),
                "tick_fired_at_p99_s": round(float(tick[1] or 0), 3),
                "completed": count_completed(conn),
                "cpu": per_unit(cpu, waiting),
            }
            log(f"timers: {results['timers']}")
    finally:
        conn.close()
        services.stop()

    results["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()[:2]]
    rows = summarize(results)
    print()
    print(table(rows))
    path = RESULTS / f"journeys-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    results["table"] = rows
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


def timers_of_bench_journey(conn: psycopg.Connection[Any], *, fired: bool) -> int:
    found = conn.execute(
        "SELECT count(*) FROM journeys_timer t JOIN journeys_enrollment en ON en.id = t.enrollment_id "
        "JOIN journeys_journey j ON j.id = en.journey_id WHERE j.key = %s AND (t.fired_at IS NOT NULL) = %s",
        [TIMER_JOURNEY, fired],
    ).fetchone()
    return int(found[0])  # type: ignore[index]


def count_completed(conn: psycopg.Connection[Any]) -> int:
    found = conn.execute(
        "SELECT count(*) FROM journeys_enrollment en JOIN journeys_journey j ON j.id = en.journey_id "
        "WHERE j.key = %s AND en.status = 'completed'",
        [TIMER_JOURNEY],
    ).fetchone()
    return int(found[0])  # type: ignore[index]


def summarize(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    e2e = results.get("e2e")
    if e2e:
        rows.append(
            row(
                f"ingestion -> first step recorded, at {results['config']['rate']:,} events/s: p50 / p99 (ms)",
                f"{e2e['p50_ms']} / {e2e['p99_ms']} ({e2e['enrollments']:,} enrollments, "
                f"sent {e2e['events_per_s']:,} events/s)",
                f"p50 <= {TARGET_E2E_P50_MS:.0f}, p99 <= {TARGET_E2E_P99_MS:.0f}",
                f"{e2e['routing_lag_p50_ms']} / {e2e['routing_lag_p99_ms']} (routing lag, same events)",
                "",
                e2e["p50_ms"] <= TARGET_E2E_P50_MS and e2e["p99_ms"] <= TARGET_E2E_P99_MS and e2e["enrollments"] > 0,
            )
        )
        rows.append(
            row(
                "events routed / sent, outbox drained",
                f"{e2e['events_routed']:,} / {e2e['events']:,}, drain {e2e['outbox_drain_s']} s",
                "all",
                "",
                "",
                e2e["events_routed"] >= e2e["events"] and e2e["outbox_drain_s"] is not None,
            )
        )
    timers = results.get("timers")
    if timers:
        rows.append(
            row(
                f"{timers['timers']:,} timers due together: lag p50 / p99 (s)",
                f"{timers['p50_s']} / {timers['p99_s']} ({timers['fired']:,} fired, {timers['completed']:,} completed)",
                f"p99 <= {TARGET_TIMER_P99_S:.0f}",
                f"{timers['tick_fired_at_p50_s']} / {timers['tick_fired_at_p99_s']} (tick's fired_at - due_at)",
                "",
                timers["p99_s"] is not None
                and timers["p99_s"] <= TARGET_TIMER_P99_S
                and timers["fired"] >= timers["timers"],
            )
        )
        per = timers["cpu"]["cpu_ms_per_unit"]
        rows.append(
            row(
                "timers: CPU per timer fired, worker + PostgreSQL (µs)",
                f"{1000 * per.get('worker', 0):.0f} + {1000 * per.get('postgres', 0):.0f} "
                f"(machine busy {timers['cpu']['machine_busy']:.0%})",
                "",
                f"{2 / max(1e-9, per.get('worker', 0) + per.get('postgres', 0)) * 1000:,.0f} timers/s on 2 cores",
                "",
                None,
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
