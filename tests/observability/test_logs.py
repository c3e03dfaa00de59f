"""Log lines are JSON with the ids of their request and trace, and never carry personal data."""

import io
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from config.core import observability
from config.core.logs import logging_config
from profiles.models import Event, Source
from tests.conftest import IngestClient


class Lines:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    def all(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines() if line.startswith("{")]

    def raw(self) -> str:
        return self.stream.getvalue()


def _capture(formatter: logging.Formatter) -> Iterator[Lines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    yield Lines(stream)
    root.removeHandler(handler)


def _configured_formatter(**options: Any) -> logging.Formatter:
    """The formatter LOGGING builds (the one the settings install on the root handler)."""
    config = logging_config(level="INFO", **options)
    return logging.config.dictConfigClass(config).configure_formatter(config["formatters"]["structured"])


@pytest.fixture
def lines() -> Iterator[Lines]:
    yield from _capture(_configured_formatter(fmt="json", redact=True))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    observability.tracing_start(SimpleSpanProcessor(exporter))
    yield exporter
    observability.tracing_stop()


@pytest.mark.django_db(transaction=True)
def test_a_line_on_the_ingestion_path_carries_the_ids_and_not_the_email(
    ingest: IngestClient, lines: Lines, spans: InMemorySpanExporter
) -> None:
    batch = [
        {"type": "identify", "userId": "u-log", "traits": {"email": "ann@example.com"}, "messageId": "m-log-1"},
        # Refused: its bad timestamp (an email address, as a client bug might send) is quoted in
        # the quarantine's detail, which the warning logs.
        {"type": "track", "userId": "u-log", "event": "X", "timestamp": "ann@example.com", "messageId": "m-log-2"},
    ]
    response = ingest.post("batch", {"batch": batch}, HTTP_X_REQUEST_ID="req-1234")
    assert response.json()["rejected"] == 1

    (line,) = [entry for entry in lines.all() if entry["event"] == "messages quarantined"]
    (request,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert request.context is not None
    event = Event.objects.get(message_id="m-log-1")
    assert response["X-Request-ID"] == line["request_id"] == "req-1234"
    assert line["trace_id"] == f"{request.context.trace_id:032x}"
    assert len(line["span_id"]) == 16
    assert line["source"] == Source.objects.get().name
    assert (line["message_id"], line["customer_id"]) == ("m-log-1", str(event.customer_id))
    assert line["reasons"] == {"invalid_timestamp": 1}
    assert "[redacted]" in line["first_detail"]
    assert "ann@example.com" not in lines.raw()


@pytest.mark.django_db
def test_a_request_without_an_id_gets_one(client: Any) -> None:
    first, second = client.get("/healthz"), client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")

    assert len(first["X-Request-ID"]) == 32
    assert second["X-Request-ID"] != "bad id with spaces"


def test_stdlib_logging_calls_are_json_with_personal_data_redacted(lines: Lines) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        logging.getLogger("legacy").warning(
            "could not reach %s at +44 20 7946 0958",
            "bob@example.org",
            extra={"phone": "+14155550100", "address": "1 Main St", "api_token": "tok", "attempt": 2},
        )
    finally:
        structlog.contextvars.clear_contextvars()

    (line,) = lines.all()
    assert line["event"] == "could not reach [redacted] at [redacted]"
    assert (line["phone"], line["address"], line["api_token"], line["attempt"]) == (
        "[redacted]",
        "[redacted]",
        "[redacted]",
        2,
    )
    assert (line["logger"], line["level"], line["request_id"]) == ("legacy", "warning", "r-1")


def test_redaction_can_be_turned_off_for_local_debugging() -> None:
    for captured in _capture(_configured_formatter(fmt="json", redact=False)):
        logging.getLogger("debugging").warning("user %s", "bob@example.org", extra={"email": "bob@example.org"})
        (line,) = captured.all()
        assert (line["event"], line["email"]) == ("user bob@example.org", "bob@example.org")
