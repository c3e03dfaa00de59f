"""`make bench-observability`: what observability costs on the ingestion hot path.

In one process, through Django's test client (no HTTP server, so the figures are the view's own
cost, not the network's), against its own database (throughline_bench_observability) and the
Redis and broker of the environment:

- /v1/track requests as shipped (metrics and JSON logs on, tracing off), then with tracing on
  (SDK, the Django/Celery/psycopg/redis/requests/urllib instrumentations, spans batched to an
  exporter that drops them): rounds alternate so a busy machine disturbs both alike;
- the metric calls one ingestion request makes (accepted counter, latency histogram), timed alone;
- the log context binding one request makes (request id, source, message and customer ids).

Prints the median per request of each. Usage: python bench/observability.py [--requests N] [--rounds R]
"""

import argparse
import os
import statistics
import sys
import time
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "throughline_bench_observability"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("INGEST_RATE_LIMIT_PER_SECOND", "1000000")
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def track_round(client: Any, auth: str, count: int, prefix: str) -> float:
    """Seconds per request for `count` /v1/track calls."""
    started = time.perf_counter()
    for n in range(count):
        response = client.post(
            "/v1/track",
            data=b'{"userId": "bench-%d", "event": "Viewed", "messageId": "%s-%d"}' % (n % 50, prefix.encode(), n),
            content_type="application/json",
            HTTP_AUTHORIZATION=auth,
            secure=True,
        )
        assert response.status_code == 200, response.content
    return (time.perf_counter() - started) / count


def median_us(values: Sequence[float]) -> float:
    return statistics.median(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup_django()

    import base64
    import uuid

    import structlog
    from django.test import Client
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from config.core import metrics, observability
    from profiles.services import source_create

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    _, key = source_create(name=f"bench-{uuid.uuid4().hex[:8]}", channel="web")
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    run = uuid.uuid4().hex[:8]
    track_round(Client(), auth, 50, f"{run}-warm")

    off: list[float] = []
    on: list[float] = []
    processor = BatchSpanProcessor(Discard())
    for r in range(args.rounds):
        off.append(track_round(Client(), auth, args.requests, f"{run}-off-{r}"))
        observability.tracing_start(processor)
        on.append(track_round(Client(), auth, args.requests, f"{run}-on-{r}"))
        observability.tracing_stop()

    def metric_calls() -> None:
        metrics.EVENTS_ACCEPTED.labels(source="bench").inc(1)
        metrics.INGEST_LATENCY.labels(endpoint="track").observe(0.004)

    def log_binding() -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id="0123456789abcdef0123456789abcdef")
        structlog.contextvars.bind_contextvars(source="bench")
        structlog.contextvars.bind_contextvars(message_id="m-1", customer_id="c-1")
        structlog.contextvars.clear_contextvars()

    metric_cost = min(timeit.repeat(metric_calls, number=20_000, repeat=5)) / 20_000
    log_cost = min(timeit.repeat(log_binding, number=20_000, repeat=5)) / 20_000
    load = os.getloadavg()[0]
    print(f"/v1/track through the test client, {args.rounds} rounds of {args.requests}, load {load:.2f} at end:")
    print(
        f"  tracing off (as shipped): median {median_us(off):8.0f} us/request  rounds {[round(v * 1e6) for v in off]}"
    )
    print(f"  tracing on, spans dropped: median {median_us(on):8.0f} us/request  rounds {[round(v * 1e6) for v in on]}")
    print(f"  metric calls of one request: {metric_cost * 1e6:6.2f} us")
    print(f"  log context binding of one request: {log_cost * 1e6:6.2f} us")
    print(f"  multiprocess metrics: {'on' if os.environ.get('PROMETHEUS_MULTIPROC_DIR') else 'off'}")


if __name__ == "__main__":
    main()
