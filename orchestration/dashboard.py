"""The operator's view: throughput, lag, backlog, failures and breakers on one admin page.

Read-only and built at request time from the database (bounded queries on indexed columns),
the broker (queue depths, as /metrics measures them) and the metrics registry (breakers live in
the delivery workers' memory, so their state is read from the metrics those workers record). It
reads other apps' tables without writing them: the page is a report across the whole path,
which is what orchestration ties together.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from channels import contracts as channels
from config.core import metrics
from config.core import prometheus as tl_prometheus
from profiles import facade as profiles

# Throughput and lag are counted over the most recent rows by primary key, so the page costs
# the same whatever the tables' size; past this many rows in the window it says "at least".
SCAN_LIMIT = 200_000
WINDOW = timedelta(minutes=5)
FAILURE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Throughput:
    events: int
    routed: int
    window_seconds: int
    capped: bool

    @property
    def events_per_second(self) -> float:
        return self.events / self.window_seconds

    @property
    def routed_per_second(self) -> float:
        return self.routed / self.window_seconds


@dataclass(frozen=True, slots=True)
class Lag:
    samples: int
    average_ms: float | None
    p95_ms: float | None
    max_ms: int | None


@dataclass(slots=True)
class Dashboard:
    at: datetime
    throughput: Throughput
    lag: Lag
    outbox_depth: int | None
    outbox_oldest_seconds: float | None
    queues: dict[str, int] | None
    quarantined_by_reason: list[tuple[str, int]]
    quarantine_open: int
    dead_by_channel: list[tuple[str, int]]
    recent_dead: list[channels.DeadDelivery]
    breakers: dict[str, float]
    problems: list[str] = field(default_factory=list)


def _recent_count(table: str, time_column: str, since: datetime) -> tuple[int, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT {time_column} FROM {table} ORDER BY id DESC LIMIT %s) AS recent "  # noqa: S608 - fixed names
            f"WHERE {time_column} >= %s",
            [SCAN_LIMIT, since],
        )
        (count,) = cursor.fetchone()
    return int(count), int(count) >= SCAN_LIMIT


def throughput(now: datetime) -> Throughput:
    since = now - WINDOW
    events, events_capped = _recent_count("profiles_event", "received_at", since)
    routed, routed_capped = _recent_count("orchestration_routelog", "routed_at", since)
    return Throughput(events, routed, int(WINDOW.total_seconds()), events_capped or routed_capped)


def routing_lag(now: datetime) -> Lag:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), avg(lag_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_ms), max(lag_ms) "
            "FROM (SELECT lag_ms, routed_at FROM orchestration_routelog ORDER BY id DESC LIMIT %s) AS recent "
            "WHERE routed_at >= %s",
            [SCAN_LIMIT, now - WINDOW],
        )
        count, average, p95, longest = cursor.fetchone()
    return Lag(int(count), float(average) if average is not None else None, p95, longest)


def breaker_states() -> dict[str, float]:
    """{provider: 1 open / 0 closed} as the delivery workers last recorded it."""
    if tl_prometheus.multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    states: dict[str, float] = {}
    for family in registry.collect():
        if family.name == metrics.BREAKER_STATE._name:
            for sample in family.samples:
                provider = sample.labels.get("provider", "")
                states[provider] = max(states.get(provider, 0.0), sample.value)
    return dict(sorted(states.items()))


def dashboard_build(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    problems: list[str] = []
    try:
        outbox_depth, outbox_oldest = tl_prometheus.outbox_state()
    except Exception as error:  # noqa: BLE001 - shown on the page
        outbox_depth, outbox_oldest = None, None
        problems.append(f"outbox: {type(error).__name__}")
    queues: dict[str, int] | None = None
    try:
        queues = tl_prometheus.queue_depths(tl_prometheus.celery_queues())
    except Exception as error:  # noqa: BLE001 - the broker may be down; that is what the page shows
        problems.append(f"broker: {type(error).__name__}")
    since = now - FAILURE_WINDOW
    quarantined, quarantine_open = profiles.quarantine_counts(since=since)
    dead_by_channel, recent_dead = channels.dead_deliveries(since=since)
    return Dashboard(
        at=now,
        throughput=throughput(now),
        lag=routing_lag(now),
        outbox_depth=outbox_depth,
        outbox_oldest_seconds=outbox_oldest,
        queues=queues,
        quarantined_by_reason=quarantined,
        quarantine_open=quarantine_open,
        dead_by_channel=dead_by_channel,
        recent_dead=recent_dead,
        breakers=breaker_states(),
        problems=problems,
    )


def operations_view(request: HttpRequest) -> HttpResponse:
    """/admin/operations/ (staff only, through admin.site.admin_view)."""
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Operations",
        "dashboard": dashboard_build(),
        "window_minutes": int(WINDOW.total_seconds() // 60),
        "failure_hours": int(FAILURE_WINDOW.total_seconds() // 3600),
    }
    return TemplateResponse(request, "admin/operations.html", context)
