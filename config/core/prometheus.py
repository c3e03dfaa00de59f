"""/metrics: what the processes recorded (config/core/metrics.py) and what is measured live.

Multiprocess-safe: under the web server and Celery every process writes its samples to memory-mapped
files in PROMETHEUS_MULTIPROC_DIR, and a scrape adds them up (`MultiProcessCollector`). The
directory must be empty when the stack starts (`manage.py serve` wipes it) and dead processes
are marked so their live gauges disappear: Celery's worker_process_shutdown below, and at every
scrape any process whose live-gauge files are there but which no longer exists (a web worker
that the server replaced or that crashed: granian has no hook in its master for that). Without
the variable (embedded mode, tests) the plain in-process registry is served.

Queue depth, outbox depth and age and readiness describe shared state, so they are measured
when scraped: one passive queue declaration per Celery queue (LLEN on Redis, a passive declare
on RabbitMQ) and one PostgreSQL query, so a scrape costs a few milliseconds and no process has
to keep them up to date.
"""

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config.core import metrics

logger = logging.getLogger(__name__)

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def multiprocess_dir_reset(path: str) -> None:
    """Empty the directory before the stack starts: files of an earlier run would be added in."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (its counters keep counting in the totals)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


def prune_dead_processes() -> None:
    """Mark dead every process that left live gauges and no longer runs (a PID can be reused,
    in which case its files stay until that process ends too)."""
    pids: set[int] = set()
    for path in Path(multiprocess_dir()).glob("gauge_live*_*.db"):
        suffix = path.stem.rsplit("_", 1)[1]
        if suffix.isdigit():
            pids.add(int(suffix))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            process_dead(pid)
        except PermissionError:
            pass  # it exists, under another user


def celery_queues() -> list[str]:
    """Every queue a task is routed to, and the default one; journeys' queues appear as they are
    added to CELERY_TASK_ROUTES."""
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in settings.CELERY_TASK_ROUTES.values():
        if isinstance(route, dict) and route.get("queue"):
            queues.add(route["queue"])
    return sorted(queues | set(getattr(settings, "METRICS_EXTRA_QUEUES", [])))


def queue_depths(queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting on each queue, through the broker's own transport (Redis or AMQP)."""
    from kombu.exceptions import ChannelError

    from config.celery import app

    depths: dict[str, int] = {}
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
        channel: Any = conn.default_channel
        for queue in queues:
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                # Redis: a queue nobody has published to yet does not exist; nothing waits on it.
                depths[queue] = 0
                channel = conn.default_channel
    return depths


def outbox_state() -> tuple[int, float]:
    """(unrouted events, seconds since the oldest of them was received). The oldest is found by
    the smallest event id, which the primary key index answers without a scan."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM profiles_eventoutbox), "
            "(SELECT e.received_at FROM profiles_event e "
            " WHERE e.id = (SELECT min(event_id) FROM profiles_eventoutbox))"
        )
        count, oldest = cursor.fetchone()
    age = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0
    return int(count), age


def _check_redis() -> None:
    from config.core import redis as tl_redis

    tl_redis.client().ping()


class LiveCollector(Collector):
    """Measures, at scrape time, what no single process owns."""

    def collect(self) -> Iterator[Any]:
        up: dict[str, bool] = {}

        queue = _family(metrics.QUEUE_DEPTH)
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            try:
                for name, waiting in queue_depths(celery_queues()).items():
                    queue.add_metric([name], waiting)
                up["broker"] = True
            except Exception:
                logger.warning("metrics: the broker did not answer", exc_info=True)
                up["broker"] = False
        yield queue

        depth, age = _family(metrics.OUTBOX_DEPTH), _family(metrics.OUTBOX_OLDEST_AGE)
        try:
            unrouted, oldest = outbox_state()
            depth.add_metric([], unrouted)
            age.add_metric([], oldest)
            up["database"] = True
        except Exception:
            logger.warning("metrics: the database did not answer", exc_info=True)
            up["database"] = False
        yield depth
        yield age

        if settings.REDIS_URL:
            try:
                _check_redis()
                up["redis"] = True
            except Exception:  # noqa: BLE001
                up["redis"] = False
        dependency = _family(metrics.DEPENDENCY_UP)
        for name, ok in sorted(up.items()):
            dependency.add_metric([name], 1.0 if ok else 0.0)
        yield dependency
        ready = _family(metrics.READY)
        ready.add_metric([], 1.0 if all(up.values()) else 0.0)
        yield ready


def _family(metric: metrics.LiveMetric) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.documentation, labels=list(metric.labels))


_live = CollectorRegistry(auto_describe=False)
_live.register(LiveCollector())


def exposition() -> bytes:
    """The whole text exposition: recorded metrics, then the live ones."""
    if multiprocess_dir():
        prune_dead_processes()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(_live)


def scrape_allowed(request: HttpRequest) -> bool:
    """A valid bearer METRICS_TOKEN, or a client address in METRICS_ALLOWED_IPS; with neither
    configured, loopback only."""
    token = settings.METRICS_TOKEN
    if token:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    networks = settings.METRICS_ALLOWED_IPS
    if not networks and token:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    allowed = [ipaddress.ip_network(n, strict=False) for n in networks] if networks else _LOOPBACK
    return any(address in network for network in allowed)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        if settings.METRICS_TOKEN and request.META.get("HTTP_AUTHORIZATION"):
            return JsonResponse({"detail": "invalid metrics token", "code": "forbidden"}, status=403)
        return JsonResponse(
            {"detail": "metrics need a bearer token or an allowed address", "code": "unauthorized"}, status=401
        )
    started = time.perf_counter()
    body = exposition()
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["X-Scrape-Duration-Seconds"] = f"{time.perf_counter() - started:.4f}"
    return response
