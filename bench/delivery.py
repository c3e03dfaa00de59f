"""`make bench-delivery`: outbound delivery throughput and latency to a local webhook sink.

Runs real Celery workers on the `delivery` queue (prefork) against PostgreSQL and Redis, on its
own database and Redis databases, with webhook deliveries to an in-process HTTP sink that answers
200 at once. Prints, and writes to bench/results/delivery-<timestamp>.json:

- drain: N deliveries queued first, then the workers start: deliveries/s from the first send to
  the last (the workers' ceiling, enqueue cost excluded);
- latency: deliveries enqueued at a steady rate while the workers run: p50/p99 from enqueue
  (queued_at) to sent (sent_at);
- degraded: the same drain with half the deliveries addressed to a second host that answers 503:
  the healthy host's deliveries/s beside the drain figure (the breaker per host should keep the
  failing one from slowing the other).
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
DB_NAME = "throughline_bench_delivery"
ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.local",
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "REDIS_URL": "redis://127.0.0.1:6379/4",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/5",
    "CHANNELS_WEBHOOK_SIGNING_SECRET": "bench-secret",
    "CHANNELS_RETRY_BASE_SECONDS": "1",
    "CHANNELS_MAX_ATTEMPTS": "3",
}


class _Sink(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(status: int) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Sink", (_Sink,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def _reset_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env={**os.environ, **ENV}, check=True)


def _worker(concurrency: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "delivery", "--pool", "prefork",
            "--concurrency", str(concurrency), "--loglevel", "ERROR", "--without-gossip", "--without-mingle",
            "--without-heartbeat"]  # fmt: skip
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **ENV}, start_new_session=True)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--latency-deliveries", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="enqueue rate of the latency run, per second")
    parser.add_argument("--concurrency", type=int, default=8, help="prefork processes of the worker")
    options = parser.parse_args()

    os.environ.update(ENV)
    _reset_database()
    import django

    django.setup()
    import redis
    from django.conf import settings

    from channels.models import Delivery
    from channels.services import deliver, system_source
    from profiles.models import Customer

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    healthy, healthy_url = _serve(200)
    down, down_url = _serve(503)
    good = Customer.objects.create(traits={"webhook_url": healthy_url})
    bad = Customer.objects.create(traits={"webhook_url": down_url})
    system_source()
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

    def enqueue(customer: Any, label: str, count: int, rate: float | None = None) -> None:
        started = time.perf_counter()
        for n in range(count):
            deliver(channel="webhook", customer_id=customer.id, content={"n": n}, idempotency_key=f"{run}:{label}:{n}")
            if rate:
                pause = started + (n + 1) / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)

    def drained(label: str, count: int, timeout: float = 300) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = list(Delivery.objects.filter(idempotency_key__startswith=f"{run}:{label}:", status="sent"))
            if len(rows) >= count:
                return rows
            time.sleep(0.2)
        raise SystemExit(f"{label}: only {len(rows)} of {count} sent within {timeout}s")

    def rate_of(rows: list[Delivery]) -> float:
        times = sorted(row.sent_at for row in rows if row.sent_at)
        return (len(times) - 1) / max((times[-1] - times[0]).total_seconds(), 1e-9)

    # 1. drain
    enqueue(good, "drain", options.deliveries)
    worker = _worker(options.concurrency)
    drain_rate = rate_of(drained("drain", options.deliveries))
    # 2. latency at a steady rate, workers warm
    enqueue(good, "latency", options.latency_deliveries, rate=options.rate)
    rows = drained("latency", options.latency_deliveries)
    latencies = [((row.sent_at - row.queued_at).total_seconds() * 1000) for row in rows if row.sent_at]
    _stop(worker)
    # 3. degraded: half to a host answering 503
    for n in range(options.deliveries):  # interleaved, so both hosts are worked on at once
        deliver(channel="webhook", customer_id=good.id, content={"n": n}, idempotency_key=f"{run}:degraded:{n}")
        deliver(channel="webhook", customer_id=bad.id, content={"n": n}, idempotency_key=f"{run}:down:{n}")
    worker = _worker(options.concurrency)
    degraded_rate = rate_of(drained("degraded", options.deliveries))
    down_attempted = Delivery.objects.filter(idempotency_key__startswith=f"{run}:down:", attempts__gt=0).count()
    _stop(worker)
    healthy.shutdown()
    down.shutdown()

    result = {
        "run": run,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "worker": {"pool": "prefork", "concurrency": options.concurrency},
        "drain_deliveries_per_s": round(drain_rate, 1),
        "latency": {
            "rate_per_s": options.rate,
            "count": len(latencies),
            "p50_ms": round(_percentile(latencies, 0.50), 1),
            "p99_ms": round(_percentile(latencies, 0.99), 1),
        },
        "degraded_healthy_deliveries_per_s": round(degraded_rate, 1),
        "degraded_ratio": round(degraded_rate / drain_rate, 3),
        "degraded_down_host_deliveries_attempted": down_attempted,
    }
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"delivery-{run}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
