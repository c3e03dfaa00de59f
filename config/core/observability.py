"""Tracing (OpenTelemetry) and the process-level wiring of metrics and logs.

Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is
set: spans go out over OTLP/HTTP in batches, and the Django, Celery, psycopg, redis and requests
instrumentations are installed (Throughline's own outbound calls make their client spans in
config/core/outbound.py). Otherwise nothing is imported or installed, and every
helper here returns after one boolean test, so the hot path pays nothing. Tests install an
in-memory exporter with `tracing_start`.

One trace per event. The request that ingests an event is the root of its trace. The event then
crosses the outbox: a web process hands ids to Celery in chunks that mix events of many
requests, so the Celery task's own context (propagated in its headers) cannot be every event's
parent. Instead the dispatcher sends, with each chunk, the W3C traceparent of the request each
event came from (`traces`: {traceparent: [event ids]}), and routing opens one
`throughline.route_event` span per event as a child of its request's span, linked to the chunk's
task span. Work a handler does for an event (journey steps, timers it sets, deliveries it
enqueues) runs under `event_context(event_id)`, so the Celery tasks it publishes carry the
event's trace onward; a task that must wait (a timer) keeps `traceparent()` with its row and
resumes with `span_from(...)`. Events the outbox sweeper re-enqueues after a broker outage have
lost their request's context: their routing span starts a new trace, carrying the same
messageId and customer id attributes, so a search by messageId still finds both.
"""

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from django.db import transaction

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import Span

_enabled = False
_tracer: Any = None
_instrumentors: list[Any] = []
# The routing spans of the events being routed in this task: {event id: span}.
_event_spans: contextvars.ContextVar[dict[int, "Span"] | None] = contextvars.ContextVar(
    "throughline_event_spans", default=None
)

ATTR_MESSAGE_ID = "throughline.message_id"
ATTR_CUSTOMER_ID = "throughline.customer_id"
ATTR_EVENT_ID = "throughline.event_id"
ATTR_SOURCE = "throughline.source"
# A batch's ids, as arrays on its request span; more than this many are cut (span size).
MAX_IDS_PER_SPAN = 500


def enabled() -> bool:
    return _enabled


def configure() -> None:
    """Called once per process from CoreConfig.ready(): Celery signals for metrics and logs, and
    tracing when an OTLP endpoint is configured."""
    _connect_celery_signals()
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracing_start(BatchSpanProcessor(OTLPSpanExporter()))


def tracing_start(*processors: "SpanProcessor") -> None:
    """Install the tracer provider (once per process) with these span processors, and the
    library instrumentations."""
    global _enabled, _tracer  # noqa: PLW0603 - process-wide switch
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        name = os.environ.get("OTEL_SERVICE_NAME") or "throughline"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        trace.set_tracer_provider(provider)
    for processor in processors:
        provider.add_span_processor(processor)
    _instrument()
    _tracer = trace.get_tracer("throughline")
    _enabled = True


def tracing_stop() -> None:
    """Remove the instrumentations (tests): the process is back to no tracing at all."""
    global _enabled  # noqa: PLW0603
    _enabled = False
    while _instrumentors:
        instrumentor = _instrumentors.pop()
        instrumentor.uninstrument()


def _instrument() -> None:
    if _instrumentors:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    for instrumentor in (
        DjangoInstrumentor(),
        CeleryInstrumentor(),
        PsycopgInstrumentor(),
        RedisInstrumentor(),
        RequestsInstrumentor(),
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
            _instrumentors.append(instrumentor)


# --- helpers the code on the path calls (no-ops while tracing is off) ------------------------


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span, as hex, or ("", "")."""
    if not _enabled:
        return "", ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def traceparent() -> str:
    """The current context as a W3C traceparent, to carry across a queue or a database row."""
    if not _enabled:
        return ""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


def annotate(**attributes: Any) -> None:
    """Set attributes (`throughline.<name>`) on the current span; lists are capped."""
    if not _enabled:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    for name, given in attributes.items():
        if given is None:
            continue
        value: Any = given
        if isinstance(given, list | tuple):
            value = [str(v) for v in given[:MAX_IDS_PER_SPAN]]
        elif not isinstance(given, bool | int | float | str):
            value = str(given)
        span.set_attribute(f"throughline.{name}", value)


@contextlib.contextmanager
def span_from(name: str, parent: str, **attributes: Any) -> Iterator[None]:
    """A span continuing the trace of a stored traceparent (a new trace when it is empty)."""
    if not _enabled:
        yield
        return
    from opentelemetry.propagate import extract

    context = extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(name, context=context):
        annotate(**attributes)
        yield


@contextlib.contextmanager
def event_context(event_id: int) -> Iterator[None]:
    """Make the routing span of this event the current span, inside a routing handler: spans and
    Celery tasks started here join the event's trace."""
    spans = _event_spans.get() if _enabled else None
    span = spans.get(event_id) if spans else None
    if span is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False):
        yield


def on_commit_in_context(task: Callable[..., Any], *args: Any) -> None:
    """`transaction.on_commit(task(*args))`, published in the trace context of the caller (the
    commit may happen outside it, e.g. after a routing handler returned)."""
    if not _enabled:
        transaction.on_commit(functools.partial(task, *args))
        return
    from opentelemetry import context as otel_context

    captured = otel_context.get_current()

    def publish() -> None:
        token = otel_context.attach(captured)
        try:
            task(*args)
        finally:
            otel_context.detach(token)

    transaction.on_commit(publish)


class RoutedEvent(Protocol):
    """What a routing span records of an event (profiles' StoredEvent has it): config.core
    imports no app, so it names the fields it reads instead of the app's type."""

    @property
    def id(self) -> int: ...
    @property
    def customer_id(self) -> UUID: ...
    @property
    def source_id(self) -> UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...


class EventSpans:
    """The per-event routing spans of one routing task (see the module docstring)."""

    def __init__(self, traces: dict[str, list[int]] | None):
        self._parents = {int(i): parent for parent, ids in (traces or {}).items() for i in ids}
        self._spans: dict[int, Span] = {}
        self._token: contextvars.Token[dict[int, Span] | None] | None = None

    def open(self, events: Sequence[RoutedEvent], message_ids: dict[int, str]) -> None:
        from opentelemetry import trace
        from opentelemetry.propagate import extract
        from opentelemetry.trace import Link

        chunk = trace.get_current_span().get_span_context()
        links = [Link(chunk)] if chunk.is_valid else None
        for event in events:
            parent = self._parents.get(event.id)
            span = _tracer.start_span(
                "throughline.route_event",
                context=extract({"traceparent": parent}) if parent else None,
                links=links,
                attributes={
                    ATTR_EVENT_ID: event.id,
                    ATTR_MESSAGE_ID: message_ids.get(event.id, ""),
                    ATTR_CUSTOMER_ID: str(event.customer_id),
                    ATTR_SOURCE: str(event.source_id),
                    "throughline.event_type": event.type,
                    "throughline.event_name": event.name,
                    "throughline.swept": parent is None,
                },
            )
            self._spans[event.id] = span
        self._token = _event_spans.set(self._spans)

    def close(self, error: BaseException | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if self._token is not None:
            _event_spans.reset(self._token)
        for span in self._spans.values():
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()


@contextlib.contextmanager
def routing_spans(traces: dict[str, list[int]] | None) -> Iterator[EventSpans | None]:
    """The per-event spans of a routing task, ended when it returns (after its commit); None
    while tracing is off."""
    if not _enabled:
        yield None
        return
    spans = EventSpans(traces)
    try:
        yield spans
    except BaseException as error:
        spans.close(error)
        raise
    spans.close(None)


def group_traces(event_ids: Sequence[int], parents: dict[int, str]) -> dict[str, list[int]]:
    """{traceparent: [event ids]} for the ids of one chunk that have one."""
    grouped: dict[str, list[int]] = {}
    for event_id in event_ids:
        parent = parents.get(event_id)
        if parent:
            grouped.setdefault(parent, []).append(event_id)
    return grouped


# --- Celery: metrics files of dead processes, a clean log context per task -------------------


def _connect_celery_signals() -> None:
    from celery import signals

    signals.worker_process_shutdown.connect(_worker_process_shutdown, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)


def _worker_process_shutdown(**_: Any) -> None:
    from config.core.prometheus import process_dead

    process_dead(os.getpid())


def _task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    import structlog

    if not _eager(task):
        # A worker process runs one task after another: nothing of the last one may leak.
        structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task=getattr(task, "name", ""), task_id=task_id)


def _task_postrun(task: Any = None, **_: Any) -> None:
    import structlog

    if _eager(task):
        # Embedded mode runs tasks inside the request: keep the request's ids.
        structlog.contextvars.unbind_contextvars("task", "task_id")
    else:
        structlog.contextvars.clear_contextvars()


def _eager(task: Any) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))
