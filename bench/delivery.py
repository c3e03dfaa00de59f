"""`make bench-delivery`: outbound delivery throughput and latency to a local webhook sink.

Runs a real Celery worker on the `delivery` queue (threads pool by default) against PostgreSQL
and Redis, on its own database and Redis databases, with webhook deliveries to a local HTTP
sink: a separate process (this file with --sink), an asyncio HTTP/1.1 server that reads each
request (headers and body) and answers at once, keep-alive, counting requests and distinct
Idempotency-Key headers.
Its own ceiling is measured in the same run (wrk, keep-alive, POSTs the size of a delivery), so
the figures say whether the sink could have been the bottleneck. Prints, and writes to
bench/results/delivery-<timestamp>.json:

- sink ceiling: the healthy sink's req/s under wrk (16 connections, 3 s);

- drain: N deliveries queued first, then the workers start: deliveries/s from the first send to
  the last (the workers' ceiling, enqueue cost excluded);
- latency: deliveries enqueued at a steady rate while the workers run: p50/p99 from enqueue
  (queued_at) to sent (sent_at);
- degraded: the same drain with half the deliveries addressed to a second host that answers 503:
  the healthy host's deliveries/s beside the drain figure (the breaker per host should keep the
  failing one from slowing the other).

Beside each figure: CPU per delivery of the worker processes, the sink, and the PostgreSQL
backends of the bench database, and the requests the sinks received (a second request for one
idempotency key would be a duplicate send).
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
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


# --- the sink: a separate process, so its CPU is its own and the GIL is not the bench's -------


def _sink_main(status: int, port_file: str) -> None:
    import asyncio

    answer = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Unavailable'}\r\nContent-Length: 0\r\n\r\n".encode()
    counts = {"requests": 0}
    keys: set[bytes] = set()

    class Http(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                head_end = self.buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                head = self.buffer[:head_end].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
                length = int(headers.get("content-length") or 0)
                if len(self.buffer) < head_end + 4 + length:
                    return  # the body is not all here yet
                self.buffer = self.buffer[head_end + 4 + length :]
                if head[0].startswith("GET /stats"):
                    body = json.dumps({**counts, "keys": len(keys)}).encode()
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                if head[0].startswith("POST /reset"):
                    counts["requests"] = 0
                    keys.clear()
                else:
                    counts["requests"] += 1
                    if "idempotency-key" in headers:
                        keys.add(headers["idempotency-key"].encode())
                self.transport.write(answer)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=1024)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        await server.serve_forever()

    asyncio.run(serve())


class _SinkProcess:
    def __init__(self, status: int):
        port_file = Path(tempfile.mkdtemp()) / "port"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(status), "--port-file", str(port_file)], start_new_session=True
        )
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise SystemExit("the sink did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            return dict(json.loads(response.read()))

    def reset(self) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=5).read()

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


def _sink_ceiling(sink: _SinkProcess, seconds: float = 3.0) -> dict[str, Any]:
    """The sink's own req/s: wrk over 16 keep-alive connections POSTing a delivery-sized body."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"req_per_s": None, "note": "wrk is not installed: no ceiling measured"}
    body = json.dumps({"id": str(uuid.uuid4()), "content": {"n": 1}})
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Throughline-Signature"] = "t=1,v1=' + "0" * 64 + '"\n'
    )
    cpu_before = _cpu_seconds([sink.process.pid])
    out = subprocess.run(
        [wrk, "-t1", "-c16", f"-d{seconds:g}s", "-s", str(script), sink.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _cpu_seconds([sink.process.pid]) - cpu_before
    rate = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    sink.reset()
    return {"req_per_s": round(rate), "sink_cpu_ms_per_request": round(cpu * 1000 / max(rate * seconds, 1), 3)}


# --- CPU per role ---------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def _roles(worker_pgid: int | None, sinks: list[_SinkProcess]) -> dict[str, list[int]]:
    """The processes of each role now: the worker's process group, the sinks, and the
    PostgreSQL backends serving the bench database."""
    found: dict[str, list[int]] = {"worker": [], "sink": [], "postgres": []}
    sink_pids = {sink.process.pid for sink in sinks}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            pid = int(entry.name)
            if worker_pgid is not None and int(fields[2]) == worker_pgid:
                found["worker"].append(pid)
            elif pid in sink_pids:
                found["sink"].append(pid)
            elif cmdline.startswith("postgres: ") and DB_NAME in cmdline:
                found["postgres"].append(pid)
    return found


class _Cpu:
    """CPU-seconds per role between start() and stop(); processes that ended in between (a
    backend that closed) are missed, so the figures are floors."""

    def __init__(self, worker_pgid: int | None, sinks: list[_SinkProcess]):
        self.worker_pgid, self.sinks = worker_pgid, sinks
        self.before = {pid: _cpu_seconds([pid]) for pids in _roles(worker_pgid, sinks).values() for pid in pids}

    def per_delivery_ms(self, deliveries: int) -> dict[str, float]:
        roles = _roles(self.worker_pgid, self.sinks)
        return {
            role: round(sum(_cpu_seconds([pid]) - self.before.get(pid, 0.0) for pid in pids) * 1000 / deliveries, 3)
            for role, pids in roles.items()
        }


def _reset_database() -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env={**os.environ, **ENV}, check=True)


def _worker(pool: str, concurrency: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "delivery", "--pool", pool,
            "--concurrency", str(concurrency), "--loglevel", "ERROR", "--without-gossip", "--without-mingle",
            "--without-heartbeat"]  # fmt: skip
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **ENV}, start_new_session=True)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """A warm shutdown (the main process only: it gives its prefetched tasks back), then
    whatever of its group is left."""
    os.kill(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--latency-deliveries", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="enqueue rate of the latency run, per second")
    parser.add_argument("--pool", default="threads", choices=["prefork", "threads"], help="the worker's pool")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's processes or threads")
    parser.add_argument("--send-threads", type=int, default=16, help="CHANNELS_SEND_THREADS of the worker")
    parser.add_argument("--batch", type=int, default=50, help="CHANNELS_SEND_BATCH of the worker")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sink:
        _sink_main(options.sink, options.port_file)
        return

    ENV["CHANNELS_SEND_THREADS"] = str(options.send_threads)
    ENV["CHANNELS_SEND_BATCH"] = str(options.batch)
    os.environ.update(ENV)
    _reset_database()
    import django

    django.setup()
    import redis
    from django.conf import settings

    from channels.models import Delivery
    from channels.services.deliveries import deliver
    from channels.services.outcomes import system_source
    from profiles.models import Customer

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    healthy, down = _SinkProcess(200), _SinkProcess(503)
    sinks = [healthy, down]
    good = Customer.objects.create(traits={"webhook_url": healthy.url})
    bad = Customer.objects.create(traits={"webhook_url": down.url})
    system_source()
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    load_at_start = [round(v, 2) for v in os.getloadavg()]
    ceiling = _sink_ceiling(healthy)
    print(f"sink ceiling: {ceiling}", flush=True)

    def enqueue(customer: Any, label: str, count: int, rate: float | None = None) -> None:
        started = time.perf_counter()
        for n in range(count):
            deliver(channel="webhook", customer_id=customer.id, content={"n": n}, idempotency_key=f"{run}:{label}:{n}")
            if rate:
                pause = started + (n + 1) / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)

    def sent(label: str) -> int:
        return Delivery.objects.filter(idempotency_key__startswith=f"{run}:{label}:", status="sent").count()

    def first_sent(label: str, worker: subprocess.Popen[bytes]) -> _Cpu:
        """CPU counting starts at the first send, so the worker's start-up is not in it."""
        while not sent(label):
            time.sleep(0.01)
        return _Cpu(worker.pid, sinks)

    def drained(label: str, count: int, timeout: float = 300) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = list(Delivery.objects.filter(idempotency_key__startswith=f"{run}:{label}:", status="sent"))
            if len(rows) >= count:
                return rows
            time.sleep(0.1)
        raise SystemExit(f"{label}: only {len(rows)} of {count} sent within {timeout}s")

    def tasks_done(timeout: float = 300) -> float:
        """When the last queued task was taken and none is unacknowledged: a batch sends
        deliveries whose own tasks are still queued, and those run (and cost) after."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not broker.llen("delivery") and not broker.hlen("unacked"):
                return time.monotonic()
            time.sleep(0.02)
        raise SystemExit("the delivery queue did not empty")

    def rate_of(rows: list[Delivery]) -> float:
        times = sorted(row.sent_at for row in rows if row.sent_at)
        return (len(times) - 1) / max((times[-1] - times[0]).total_seconds(), 1e-9)

    # 1. drain
    enqueue(good, "drain", options.deliveries)
    worker = _worker(options.pool, options.concurrency)
    cpu = first_sent("drain", worker)
    started = time.monotonic()
    drain_rows = drained("drain", options.deliveries)
    drain_rate = rate_of(drain_rows)
    drain_all_tasks_rate = options.deliveries / (tasks_done() - started)
    drain_cpu = cpu.per_delivery_ms(options.deliveries)
    drain_sink = healthy.stats()
    print(f"drain: {drain_rate:.1f}/s sent, {drain_all_tasks_rate:.1f}/s until every task ran", flush=True)
    print(f"drain: cpu ms per delivery {drain_cpu}, sink {drain_sink}", flush=True)
    # 2. latency at a steady rate, workers warm
    healthy.reset()
    cpu = _Cpu(worker.pid, sinks)
    enqueue(good, "latency", options.latency_deliveries, rate=options.rate)
    rows = drained("latency", options.latency_deliveries)
    latency_cpu = cpu.per_delivery_ms(options.latency_deliveries)
    latencies = [((row.sent_at - row.queued_at).total_seconds() * 1000) for row in rows if row.sent_at]
    _stop(worker)
    # 3. degraded: half to a host answering 503
    healthy.reset()
    for n in range(options.deliveries):  # interleaved, so both hosts are worked on at once
        deliver(channel="webhook", customer_id=good.id, content={"n": n}, idempotency_key=f"{run}:degraded:{n}")
        deliver(channel="webhook", customer_id=bad.id, content={"n": n}, idempotency_key=f"{run}:down:{n}")
    worker = _worker(options.pool, options.concurrency)
    cpu = first_sent("degraded", worker)
    degraded_rows = drained("degraded", options.deliveries)
    degraded_cpu = cpu.per_delivery_ms(options.deliveries)
    degraded_rate = rate_of(degraded_rows)
    down_attempted = Delivery.objects.filter(idempotency_key__startswith=f"{run}:down:", attempts__gt=0).count()
    degraded_sinks = {"healthy": healthy.stats(), "down": down.stats()}
    _stop(worker)
    for sink in sinks:
        sink.stop()

    result = {
        "run": run,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
        },
        "worker": {
            "pool": options.pool,
            "concurrency": options.concurrency,
            "send_threads": options.send_threads,
            "batch": options.batch,
        },
        "sink_ceiling": ceiling,
        "drain_deliveries": options.deliveries,
        "drain_deliveries_per_s": round(drain_rate, 1),
        "drain_until_every_task_ran_per_s": round(drain_all_tasks_rate, 1),
        "drain_cpu_ms_per_delivery": drain_cpu,
        "drain_sink": drain_sink,
        "latency": {
            "rate_per_s": options.rate,
            "count": len(latencies),
            "p50_ms": round(_percentile(latencies, 0.50), 1),
            "p99_ms": round(_percentile(latencies, 0.99), 1),
            "cpu_ms_per_delivery": latency_cpu,
        },
        "degraded_healthy_deliveries_per_s": round(degraded_rate, 1),
        "degraded_ratio": round(degraded_rate / drain_rate, 3),
        "degraded_cpu_ms_per_healthy_delivery": degraded_cpu,
        "degraded_down_host_deliveries_attempted": down_attempted,
        "degraded_sinks": degraded_sinks,
    }
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"delivery-{run}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
