"""Every Prometheus metric Throughline exports, declared in one place.

Names follow the Prometheus conventions: a unit suffix (`_seconds`, `_bytes`), `_total` on
counters, and labels of bounded cardinality only (source ids and channel names, never customer
ids). Under gunicorn and Celery the values are shared between processes through
PROMETHEUS_MULTIPROC_DIR (see config/core/observability.py); gauges say how they combine.
"""

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# --- Ingestion -------------------------------------------------------------------------------
EVENTS_ACCEPTED = Counter("throughline_events_accepted_total", "Events stored.", ["source"])
EVENTS_REJECTED = Counter("throughline_events_rejected_total", "Requests or messages refused.", ["source", "reason"])
EVENTS_QUARANTINED = Counter(
    "throughline_events_quarantined_total", "Messages set aside in quarantine.", ["source", "reason"]
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
QUEUE_DEPTH = Gauge(
    "throughline_queue_depth", "Messages waiting on each Celery queue.", ["queue"], multiprocess_mode="livemax"
)
OUTBOX_DEPTH = Gauge("throughline_outbox_depth", "Accepted events not yet routed.", multiprocess_mode="livemax")
OUTBOX_OLDEST_AGE = Gauge(
    "throughline_outbox_oldest_age_seconds", "Age of the oldest unrouted event.", multiprocess_mode="livemax"
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
