"""One trace per event, from the request that ingests it across the worker boundary.

The test process traces into an in-memory exporter; the Celery worker is a real process that
exports over OTLP/HTTP to a real local receiver (tests/observability/otlp.py)."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from channels.services.deliveries import deliver
from config.core import observability
from journeys.services import timers_tick
from orchestration import routing
from profiles.contracts import StoredEvent
from profiles.models import Event
from tests.channels.factories import customer_with
from tests.conftest import IngestClient, wait_until
from tests.journeys.engine_support import fresh_contact_policy, identify, providers, publish
from tests.observability.otlp import OtlpReceiver, start_otlp_receiver

__all__ = ["fresh_contact_policy", "providers"]  # fixtures used here


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = start_otlp_receiver()
    yield receiver
    receiver.stop()


def _request_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    return span


def _hex(number: int, width: int) -> str:
    return f"{number:0{width}x}"


@pytest.mark.django_db(transaction=True)
def test_one_trace_runs_from_the_ingesting_request_into_the_workers_routing(
    spans: InMemorySpanExporter,
    receiver: OtlpReceiver,
    ingest: IngestClient,
    worker_factory: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "throughline-worker")
    worker_factory(queues="routing", concurrency=1)

    response = ingest.post("track", {"userId": "u-trace", "event": "Viewed", "messageId": "msg-trace-1"})
    assert response.status_code == 200
    event = Event.objects.get(message_id="msg-trace-1")
    request = _request_span(spans)
    assert request.context is not None
    trace_id = _hex(request.context.trace_id, 32)
    assert request.attributes is not None
    assert list(request.attributes["throughline.message_id"]) == ["msg-trace-1"]  # type: ignore[arg-type]
    assert list(request.attributes["throughline.customer_id"]) == [str(event.customer_id)]  # type: ignore[arg-type]

    def routed_span() -> Any:
        return next(
            (s for s in receiver.received() if s.attributes.get("throughline.message_id") == "msg-trace-1"), None
        )

    def task_spans() -> set[tuple[str, str]]:
        # (The worker may also run routing tasks other tests left on the queue.)
        return {(s.trace_id, s.span_id) for s in receiver.received() if s.name == "run/orchestration.route_events"}

    wait_until(
        lambda: routed_span() is not None and bool(set(routed_span().links) & task_spans()),
        timeout=60,
        message="the worker exports the event's routing span and its task's span",
    )
    span = routed_span()
    in_process = {_hex(s.context.span_id, 16) for s in spans.get_finished_spans() if s.context is not None}

    assert (span.name, span.service) == ("throughline.route_event", "throughline-worker")
    assert span.trace_id == trace_id
    assert span.parent_span_id in in_process, "the routing span's parent is a span of the ingesting request"
    assert span.attributes["throughline.customer_id"] == str(event.customer_id)
    assert span.attributes["throughline.event_id"] == event.id
    assert len(span.links) == 1, "linked to the one task span that routed the chunk (waited for above)"


@pytest.mark.django_db(transaction=True)
def test_a_delivery_enqueued_while_routing_an_event_joins_the_events_trace(
    spans: InMemorySpanExporter, ingest: IngestClient, monkeypatch: Any
) -> None:
    """What a journey step does for an event (here: deliver) runs under event_context, and the
    send task is published at commit in that event's trace."""
    customer_with(user_id="u-1", phone="+14155550100")
    parent_trace, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert ingest.post("track", {"userId": "u-1", "event": "Ordered", "messageId": "m-deliver"}).status_code == 200
    event = Event.objects.get(message_id="m-deliver")

    def journey_step(events: list[StoredEvent]) -> None:
        for stored in events:
            with observability.event_context(stored.id):
                deliver(
                    channel="sms", customer_id=stored.customer_id, content={"body": "Hi"}, idempotency_key="k-trace"
                )

    monkeypatch.setattr(routing, "_handlers", [journey_step])
    # As the worker would, with the traceparent the dispatcher sent (here a made-up parent).
    routing.route([event.id], traces={f"00-{parent_trace}-{parent_span}-01": [event.id]})

    finished = spans.get_finished_spans()
    (routed,) = [s for s in finished if s.name == "throughline.route_event"]
    publish = [s for s in finished if s.name == "apply_async/channels.send_delivery"]
    assert routed.context is not None and routed.parent is not None
    assert (_hex(routed.context.trace_id, 32), _hex(routed.parent.span_id, 16)) == (parent_trace, parent_span)
    assert routed.attributes is not None and routed.attributes["throughline.message_id"] == "m-deliver"
    assert len(publish) == 1
    assert publish[0].parent is not None
    assert publish[0].parent.span_id == routed.context.span_id


@pytest.mark.django_db(transaction=True)
def test_a_journey_message_step_run_for_an_event_sends_in_the_events_trace(
    spans: InMemorySpanExporter, ingest: IngestClient, providers: None, fresh_contact_policy: None
) -> None:
    """The real journey engine, as routing runs it: the message step's delivery is published in
    the trace of the event that triggered the journey."""
    identify(ingest, "u-journey")
    publish(
        {
            "trigger": {"type": "event", "event": "Ordered"},
            "entry": {"reentry": "every_time"},
            "start": "thanks",
            "steps": {
                "thanks": {
                    "type": "message",
                    "channels": ["sms"],
                    "purpose": "transactional",
                    "content": {"sms": {"body": "Thanks"}},
                    "next": "done",
                },
                "done": {"type": "exit"},
            },
        },
        key="thanks",
    )
    spans.clear()
    parent_trace, parent_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    assert ingest.post("track", {"userId": "u-journey", "event": "Ordered", "messageId": "m-j"}).status_code == 200
    event = Event.objects.get(message_id="m-j")

    routing.route([event.id], traces={f"00-{parent_trace}-{parent_span}-01": [event.id]})

    finished = spans.get_finished_spans()
    (routed,) = [s for s in finished if s.name == "throughline.route_event"]
    publish_spans = [s for s in finished if s.name == "apply_async/channels.send_delivery"]
    assert routed.context is not None
    assert _hex(routed.context.trace_id, 32) == parent_trace
    assert len(publish_spans) == 1
    assert publish_spans[0].parent is not None
    assert publish_spans[0].parent.span_id == routed.context.span_id


@pytest.mark.django_db(transaction=True)
def test_a_journey_timer_fires_in_the_trace_of_the_event_that_started_the_journey(
    spans: InMemorySpanExporter, ingest: IngestClient, providers: None, fresh_contact_policy: None
) -> None:
    """Five minutes later, on another tick: the timer's span and the message it sends are still
    in the triggering event's trace (the enrollment keeps the traceparent)."""
    identify(ingest, "u-timer")
    publish(
        {
            "trigger": {"type": "event", "event": "Cart Abandoned"},
            "entry": {"reentry": "every_time"},
            "start": "pause",
            "steps": {
                "pause": {"type": "wait", "duration": {"minutes": 5}, "next": "nudge"},
                "nudge": {
                    "type": "message",
                    "channels": ["sms"],
                    "purpose": "transactional",
                    "content": {"sms": {"body": "Still there?"}},
                    "next": "done",
                },
                "done": {"type": "exit"},
            },
        },
        key="nudge",
    )
    parent_trace, parent_span = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    assert ingest.post("track", {"userId": "u-timer", "event": "Cart Abandoned", "messageId": "m-t"}).status_code == 200
    event = Event.objects.get(message_id="m-t")
    routing.route([event.id], traces={f"00-{parent_trace}-{parent_span}-01": [event.id]})
    spans.clear()

    assert timers_tick(now=timezone.now() + timedelta(minutes=6)) == 1

    finished = spans.get_finished_spans()
    (timer,) = [s for s in finished if s.name == "throughline.journey_timer"]
    (send,) = [s for s in finished if s.name == "apply_async/channels.send_delivery"]
    assert timer.context is not None and timer.attributes is not None
    assert _hex(timer.context.trace_id, 32) == parent_trace
    assert (timer.attributes["throughline.step"], timer.attributes["throughline.timer"]) == ("pause", "wait")
    assert send.parent is not None and send.parent.span_id == timer.context.span_id


@pytest.mark.django_db
def test_tracing_off_installs_nothing_and_adds_no_middleware(settings: Any) -> None:
    assert not observability.enabled()
    assert observability.traceparent() == ""
    assert not any("opentelemetry" in m for m in settings.MIDDLEWARE)
