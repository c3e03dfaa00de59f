"""Every Prometheus metric Throughline exports, declared in one place.

Names follow the Prometheus conventions: a unit suffix (`_seconds`, `_bytes`), `_total` on
counters, and labels of bounded cardinality only (source names, channel and provider names,
error codes; never customer ids or message ids). Under the web server and Celery the values are shared
between processes through PROMETHEUS_MULTIPROC_DIR (see config/core/prometheus.py); gauges say
how they combine.

Two kinds live here: metrics a process records as things happen (Counter, Histogram, Gauge),
and LIVE metrics measured when /metrics is scraped (queue and outbox depth, readiness) by
config/core/prometheus.py, because they describe shared state (the broker, the database) that no
one process owns.
"""

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# --- Ingestion -------------------------------------------------------------------------------
EVENTS_ACCEPTED = Counter("throughline_events_accepted_total", "Events stored.", ["source"])
EVENTS_REJECTED = Counter("throughline_events_rejected_total", "Requests or messages refused.", ["source", "reason"])
EVENTS_QUARANTINED = Counter(
    "throughline_events_quarantined_total", "Messages set aside in quarantine.", ["source", "reason"]
)
EVENTS_DUPLICATE = Counter(
    "throughline_events_duplicate_total", "Messages whose messageId the source had already sent.", ["source"]
)
EVENTS_SUPPRESSED = Counter(
    "throughline_events_suppressed_total", "Messages of people erased with suppression, not stored.", ["source"]
)
INGEST_LATENCY = Histogram(
    "throughline_ingest_duration_seconds",
    "Time to answer an ingestion request.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)

# --- Routing ---------------------------------------------------------------------------------
ROUTING_LAG = Histogram(
    "throughline_routing_lag_seconds", "From an event's receipt to its routing.", buckets=_LAG_BUCKETS
)
EVENTS_ROUTED = Counter("throughline_events_routed_total", "Events routed to the handlers.")
OUTBOX_SWEPT = Counter(
    "throughline_outbox_swept_total", "Events the sweeper re-enqueued because their routing had not completed."
)

# --- Journeys --------------------------------------------------------------------------------
JOURNEY_ENTRIES = Counter("throughline_journey_entries_total", "Customers entering a journey.", ["journey"])
JOURNEY_EXITS = Counter(
    "throughline_journey_exits_total", "Enrollments ending, by how they ended.", ["journey", "status"]
)
JOURNEY_STEPS = Counter(
    "throughline_journey_steps_total", "Step executions, by kind and outcome.", ["journey", "kind", "outcome"]
)
TIMER_LAG = Histogram("throughline_timer_lag_seconds", "From a timer's due time to its firing.", buckets=_LAG_BUCKETS)
SEGMENT_CHANGES = Counter("throughline_segment_changes_total", "Segment entries and exits.", ["segment", "change"])
DECIDE_LATENCY = Histogram(
    "throughline_decide_duration_seconds", "Time to answer a decide request.", ["placement"], buckets=_LATENCY_BUCKETS
)
DECIDE_DEGRADED = Counter(
    "throughline_decide_degraded_total", "Decide answers given from the default experience.", ["placement", "reason"]
)

# --- Delivery --------------------------------------------------------------------------------
DELIVERIES = Counter("throughline_deliveries_total", "Delivery attempts by outcome.", ["channel", "provider", "status"])
BREAKER_STATE = Gauge(
    "throughline_circuit_breaker_open",
    "1 while a provider's circuit breaker is open, else 0.",
    ["provider"],
    multiprocess_mode="livemax",
)

# --- Sessions --------------------------------------------------------------------------------
SESSION_OPERATIONS = Counter(
    "throughline_session_operations_total", "Session reads, writes, conflicts, handoffs and resumes.", ["operation"]
)


# --- Live: measured at scrape time (config/core/prometheus.py), never recorded by a process ----
@dataclass(frozen=True, slots=True)
class LiveMetric:
    name: str
    documentation: str
    labels: tuple[str, ...] = ()


QUEUE_DEPTH = LiveMetric("throughline_queue_depth", "Messages waiting on each Celery queue.", ("queue",))
OUTBOX_DEPTH = LiveMetric("throughline_outbox_depth", "Accepted events not yet routed.")
OUTBOX_OLDEST_AGE = LiveMetric(
    "throughline_outbox_oldest_age_seconds", "Age of the oldest unrouted event since it was received (0 when none)."
)
READY = LiveMetric(
    "throughline_ready", "1 when the database, Redis and the broker all answer (what /readyz checks), else 0."
)
DEPENDENCY_UP = LiveMetric(
    "throughline_dependency_up", "1 when this dependency answered the scrape's check, else 0.", ("dependency",)
)
LIVE_METRICS = (QUEUE_DEPTH, OUTBOX_DEPTH, OUTBOX_OLDEST_AGE, READY, DEPENDENCY_UP)
