"""/metrics moves when events flow: ingestion counters, routing in a real worker (multiprocess
files), outbox and queue depth measured at scrape time, sessions, and who may scrape."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from config.core.prometheus import exposition
from orchestration.models import RouteLog
from profiles.models import Event, EventOutbox, Source
from tests.conftest import ROOT, IngestClient, wait_until
from tests.observability.scrape import parse, scrape, value

TRACK = {"type": "track", "userId": "u-1", "event": "Viewed"}


@pytest.mark.django_db
def test_ingestion_counts_accepted_duplicate_quarantined_and_refused(ingest: IngestClient, client: Any) -> None:
    name = Source.objects.get().name
    before = scrape(client)

    assert ingest.post("track", {**TRACK, "messageId": "m-1"}).status_code == 200
    batch = [
        {**TRACK, "messageId": "m-2"},
        {**TRACK, "messageId": "m-3"},
        {**TRACK, "messageId": "m-1"},  # already sent: a duplicate
        {"type": "track", "event": "No identity", "messageId": "m-4"},  # quarantined
    ]
    response = ingest.post("batch", {"batch": batch})
    assert response.json()["errors"][0]["code"] == "missing_identity"
    assert ingest.post("track", TRACK, HTTP_AUTHORIZATION=ingest.auth("not-a-key")).status_code == 401
    after = scrape(client)

    def moved(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert moved("throughline_events_accepted_total", source=name) == 3
    assert moved("throughline_events_duplicate_total", source=name) == 1
    assert moved("throughline_events_quarantined_total", source=name, reason="missing_identity") == 1
    assert moved("throughline_events_rejected_total", source="unknown", reason="invalid_write_key") == 1
    assert moved("throughline_ingest_duration_seconds_count", endpoint="track") == 2
    assert moved("throughline_ingest_duration_seconds_count", endpoint="batch") == 1


@pytest.mark.django_db(transaction=True)
def test_outbox_and_queue_depth_are_measured_when_scraped(ingest: IngestClient, client: Any) -> None:
    before = scrape(client)
    for n in range(3):
        assert ingest.post("track", {**TRACK, "messageId": f"q-{n}"}).status_code == 200
    Event.objects.update(received_at=timezone.now() - timedelta(seconds=120))

    after = scrape(client)

    assert value(after, "throughline_outbox_depth") == EventOutbox.objects.count() == 3
    assert value(after, "throughline_outbox_oldest_age_seconds") >= 120
    # No worker runs here: each request's routing task waits on the routing queue.
    routing = value(after, "throughline_queue_depth", queue="routing") - value(
        before, "throughline_queue_depth", queue="routing"
    )
    assert routing == 3
    assert {q for (n, labels) in after if n == "throughline_queue_depth" for _, q in labels} >= {
        "default",
        "routing",
        "delivery",
        "maintenance",
    }


@pytest.mark.django_db
def test_readiness_is_a_metric(client: Any) -> None:
    samples = scrape(client)

    assert value(samples, "throughline_ready") == 1
    assert [value(samples, "throughline_dependency_up", dependency=d) for d in ("database", "redis", "broker")] == [
        1,
        1,
        1,
    ]


@pytest.mark.django_db(transaction=True)
def test_routing_in_a_worker_process_is_counted_through_the_multiprocess_directory(
    ingest: IngestClient, client: Any, worker_factory: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    """The worker records into PROMETHEUS_MULTIPROC_DIR; /metrics (here in multiprocess mode too)
    adds up every process's files."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    worker_factory(queues="routing", concurrency=2)
    batch = [{**TRACK, "messageId": f"w-{n}"} for n in range(7)]
    assert ingest.post("batch", {"batch": batch}).json()["accepted"] == 7

    # Routing the batch starts a session, whose "Session Started" event is routed too.
    wait_until(
        lambda: not EventOutbox.objects.exists() and RouteLog.objects.count() == Event.objects.count() > 7,
        timeout=60,
        message="the worker routes the batch and what it caused",
    )
    routed = RouteLog.objects.count()
    samples = scrape(client)

    assert value(samples, "throughline_events_routed_total") == routed
    assert value(samples, "throughline_routing_lag_seconds_count") == routed
    assert any(path.name.startswith("counter_") for path in tmp_path.iterdir())


@pytest.mark.django_db(transaction=True)
def test_session_reads_writes_and_conflicts_are_counted(source: Any, sessions_for: Any, client: Any) -> None:
    web = sessions_for(source)
    before = scrape(client)
    started = web.start({"userId": "u-1", "state": {"step": 1}}).json()
    assert web.get(started["id"]).status_code == 200
    assert web.patch(started["id"], {"step": 2}, version=1).status_code == 200
    assert web.patch(started["id"], {"step": 3}, version=1).status_code == 412
    after = scrape(client)

    def moved(operation: str) -> float:
        labels = {"operation": operation}
        return value(after, "throughline_session_operations_total", **labels) - value(
            before, "throughline_session_operations_total", **labels
        )

    assert (moved("read"), moved("write"), moved("conflict")) == (1, 1, 1)


@pytest.mark.django_db
def test_a_metrics_token_is_required_once_configured(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-token"

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")

    assert (missing.status_code, missing.json()["code"]) == (401, "unauthorized")
    assert (wrong.status_code, wrong.json()["code"]) == (403, "forbidden")
    assert right.status_code == 200


@pytest.mark.django_db
def test_an_allow_list_admits_only_its_networks(client: Any, settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


@pytest.mark.django_db
def test_without_configuration_only_loopback_may_scrape(client: Any) -> None:
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 401


def test_a_process_live_gauges_count_while_it_runs_and_go_with_it(tmp_path: Path, monkeypatch: Any) -> None:
    """A web worker that the server replaced, or that crashed, leaves its live-gauge files behind:
    the next scrape drops them, while those of a process still running keep counting."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    script = (
        "import sys; from config.core import metrics; metrics.BREAKER_STATE.labels(provider='twilio').set(1); "
        "print('set', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "set\n"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def breaker() -> float:
        return value(parse(exposition().decode()), "throughline_circuit_breaker_open", provider="twilio")

    assert breaker() == 1
    child.kill()
    child.wait(timeout=30)
    assert breaker() == 0
    assert not list(tmp_path.glob("gauge_livemax_*.db"))
